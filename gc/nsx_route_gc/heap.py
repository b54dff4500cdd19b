"""Pausing Python's cyclic garbage collector around bulk work that creates no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Listing and judging 100,000 routes allocate millions of objects that form no reference
    cycle; each allocation counts towards the collector's thresholds, and its full passes over
    an ever larger heap find nothing while costing a fifth to a third of the CPU time. Cycles
    made meanwhile (by a library, say) are collected once the collector is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
