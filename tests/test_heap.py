"""The collector pause leaves the collector as it found it, also when the body raises."""

from __future__ import annotations

import gc

import pytest

from nsx_route_gc.heap import collector_paused


def test_collector_is_off_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_comes_back_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_what_the_bulk_work_made_is_frozen_for_the_rest_of_the_run() -> None:
    gc.unfreeze()
    with collector_paused():
        made = [[i] for i in range(1000)]
    try:
        # Later collections skip these (and everything older) instead of walking them again.
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.unfreeze()
