"""The client-side token bucket, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from factories import FakeTime
from nsx_route_gc.nsx.ratelimit import TokenBucket


def test_burst_is_free_then_callers_wait_one_interval_each() -> None:
    fake = FakeTime(start=1000.0)
    bucket = TokenBucket(10.0, burst=2, clock=fake.clock, sleep=fake.sleep)

    waits = [bucket.acquire() for _ in range(5)]

    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.1, 0.1, 0.1])
    assert fake.slept == pytest.approx([0.1, 0.1, 0.1])


def test_idle_time_refills_up_to_the_burst_only() -> None:
    fake = FakeTime(start=1000.0)
    bucket = TokenBucket(10.0, burst=3, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        bucket.acquire()

    fake.now += 60.0  # a long pause saves up no more than the burst
    waits = [bucket.acquire() for _ in range(4)]

    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_a_clock_stepping_back_does_not_drain_the_bucket() -> None:
    fake = FakeTime(start=1000.0)
    bucket = TokenBucket(10.0, burst=2, clock=fake.clock, sleep=fake.sleep)
    fake.now -= 50.0

    assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.0


def test_default_burst_is_a_tenth_of_a_second() -> None:
    assert TokenBucket(90.0).capacity == 9.0
    assert TokenBucket(5.0).capacity == 1.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, None), (-1.0, None), (10.0, 0.5)])
def test_nonsense_parameters_are_refused(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate, burst)


def test_concurrent_callers_each_reserve_their_own_slot() -> None:
    # The clock is frozen (sleep is not allowed to move it here), so every caller beyond the
    # burst must have reserved a distinct, later slot: 0.1, 0.2, ... whatever the order.
    now = 50.0
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    bucket = TokenBucket(10.0, burst=4, clock=lambda: now, sleep=sleep)
    waits: list[float] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        wait = bucket.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits) == pytest.approx([0.0] * 4 + [k / 10 for k in range(1, 17)])
    assert sorted(slept) == pytest.approx([k / 10 for k in range(1, 17)])
