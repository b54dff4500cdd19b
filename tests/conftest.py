"""What every test shares."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _unfrozen_heap() -> Iterator[None]:
    """A run freezes its heap for its own lifetime (heap.collector_paused); a test session
    runs hundreds of runs, whose cycles are collectable again once each test is over."""
    yield
    gc.unfreeze()
