"""How many NSX calls may be in flight: additive increase, multiplicative decrease (AIMD).

NSX limits each client to 40 calls in flight (503 beyond) and 100 a second (429 beyond),
shared with every CCM, NCP and Terraform. A fixed width is wrong at both ends: on a manager
that answers in 20 ms, 8 in flight already reach the token bucket's rate, and more would
only crowd the manager; on one that answers a page in 500 ms, 8 in flight use a fifth of
the rate and a run crawls.

So the limit starts at ``nsx.concurrency`` and grows while it is what holds the run back:
while answers come back without 429/503, the gate was full, and the answers are slow enough
that the token bucket's rate times the round trip is more than the limit (Little's law: more
in flight would raise the call rate, not only the queue at the manager). It grows by one per
answer until the first 429 or 503 (doubling each round trip, as TCP's slow start), and by one
per round trip after it. A 429 or 503 halves it, once per round trip: the answers of calls
already in flight carry the same news. It never exceeds ``nsx.max_concurrency`` and never
falls below 1. The token bucket still caps the rate whatever the width.

``AdaptiveLimit`` only decides (a pure class, its clock a constructor argument);
``InFlightGate`` enforces its limit on the threads sending calls.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Statuses that say the manager is over its limits: the rate (429) or calls in flight (503).
CONGESTION_STATUSES = frozenset({429, 503})
# Weight of the newest answer in the smoothed round trip (TCP's SRTT uses 1/8).
_SMOOTHING = 0.125


@dataclass(frozen=True)
class Change:
    """The limit moved: from, to, and why (``slow-answers``, ``429``, ``503``)."""

    before: int
    after: int
    why: str


class AdaptiveLimit:
    """The in-flight limit and the rules that move it; no threads, no I/O."""

    def __init__(
        self,
        start: int,
        maximum: int,
        *,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if start < 1:
            raise ValueError(f"the in-flight limit must start at 1 or more, got {start}")
        self.maximum = max(start, maximum)
        self.limit = start
        self.peak = start
        self._rate = rate
        self._clock = clock
        self._slow_start = True  # until the first 429/503
        self._credit = 0  # answers counted towards the next additive step
        self._rtt: float | None = None
        self._calm_at = 0.0  # no second decrease before this moment

    @property
    def round_trip(self) -> float | None:
        """The smoothed time an answer takes, once one came back."""
        return self._rtt

    def answered(self, seconds: float, status: int | None, *, saturated: bool) -> Change | None:
        """One call came back after ``seconds`` with ``status`` (None: no answer, such as a
        connection error); ``saturated``: every slot was taken at some moment while it was
        in flight, or a caller was waiting for one (a wider limit would have been used).
        The change, if any."""
        if status in CONGESTION_STATUSES:
            return self._decrease(str(status), seconds)
        if status is None:
            return None  # no news about the manager's limits
        seconds = max(0.0, seconds)
        self._rtt = seconds if self._rtt is None else self._rtt + _SMOOTHING * (seconds - self._rtt)
        if not saturated or self.limit >= self.maximum or not self._too_narrow():
            return None
        if not self._slow_start:
            self._credit += 1
            if self._credit < self.limit:
                return None
        self._credit = 0
        return self._set(self.limit + 1, "slow-answers")

    def _too_narrow(self) -> bool:
        """Whether more calls in flight would raise the call rate (the limit, not the token
        bucket, holds the run back)."""
        if self._rtt is None:
            return False
        wanted = self._rtt * self._rate if self._rate else math.inf
        return wanted > self.limit

    def _decrease(self, why: str, seconds: float) -> Change | None:
        now = self._clock()
        self._slow_start = False
        self._credit = 0
        if now < self._calm_at:
            return None  # the same round trip's news: halved once already
        # A round trip: the smoothed one, or this answer's own before any other came back.
        self._calm_at = now + max(self._rtt or 0.0, seconds)
        return self._set(max(1, self.limit // 2), why)

    def _set(self, value: int, why: str) -> Change | None:
        value = max(1, min(self.maximum, value))
        if value == self.limit:
            return None
        change = Change(self.limit, value, why)
        self.limit = value
        self.peak = max(self.peak, value)
        return change


class InFlightGate:
    """Holds callers back while ``limit.limit`` calls are in flight; thread-safe."""

    def __init__(
        self,
        limit: AdaptiveLimit,
        *,
        on_change: Callable[[Change], None] = lambda change: None,
    ) -> None:
        self._limit = limit
        self._on_change = on_change
        self._ready = threading.Condition()
        self._in_flight = 0
        self._waiting = 0
        # How many times a call took the last slot. Answers of one round trip come back
        # together, the first freeing a slot before the others are counted: whether the
        # gate was full as each came back would say "full" for the first alone, and the
        # limit would grow by one per round trip instead of doubling.
        self._filled = 0

    @property
    def peak(self) -> int:
        return self._limit.peak

    def enter(self) -> int:
        """Wait for a slot; the ticket to give ``leave``."""
        with self._ready:
            self._waiting += 1
            while self._in_flight >= self._limit.limit:
                self._ready.wait()
            self._waiting -= 1
            ticket = self._filled
            self._in_flight += 1
            if self._in_flight >= self._limit.limit:
                self._filled += 1
            return ticket

    def demand(self, waiting: int) -> None:
        """Callers waiting elsewhere for work that needs a slot (``Permits``): counted as
        waiting here when an answer asks whether the limit was what held them back."""
        with self._ready:
            self._waiting += waiting

    def leave(self, seconds: float, status: int | None, ticket: int) -> None:
        """A call is done: it took ``seconds`` on the wire and was answered ``status``;
        ``ticket``: what ``enter`` gave it (whether the gate filled while it was out)."""
        with self._ready:
            saturated = (
                self._waiting > 0 or self._in_flight >= self._limit.limit or self._filled != ticket
            )
            self._in_flight -= 1
            change = self._limit.answered(seconds, status, saturated=saturated)
            self._ready.notify_all()
        if change is not None:
            self._on_change(change)


class Permits:
    """Work that holds what it fetched between calls (a router's decoded pages until they
    are routes) goes at most ``limit.limit`` at a time, the in-flight limit as it is now: as
    many threads as the limit may ever allow wait here, so their pages are never all in
    memory at once. A context manager; thread-safe."""

    def __init__(self, limit: AdaptiveLimit, gate: InFlightGate) -> None:
        self._limit = limit
        self._gate = gate
        self._ready = threading.Condition()
        self._held = 0

    def __enter__(self) -> None:
        with self._ready:
            if self._held >= self._limit.limit:
                # Work waiting here is demand for a wider limit, as a call waiting at the gate.
                self._gate.demand(1)
                try:
                    while self._held >= self._limit.limit:
                        self._ready.wait()
                finally:
                    self._gate.demand(-1)
            self._held += 1

    def __exit__(self, *exc: object) -> None:
        with self._ready:
            self._held -= 1
            self._ready.notify_all()


def paced_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    width: Callable[[], int],
    max_workers: int,
    thread_name_prefix: str = "nsx",
) -> list[R]:
    """``[fn(item) for item in items]`` on threads, with at most ``width()`` (read afresh as
    items finish, never over ``max_workers``) running at once, so that threads are made only
    as the in-flight limit opens: every thread that ever ran keeps a malloc arena with what
    it freed, measured at 18 MB for 32 listing threads where 8 were in flight. The first
    exception is raised once the running items are done; nothing more is started."""
    results: dict[int, R] = {}
    queue = iter(enumerate(items))
    with ThreadPoolExecutor(max(1, max_workers), thread_name_prefix=thread_name_prefix) as pool:
        running: dict[Future[R], int] = {}
        exhausted = False
        while True:
            while not exhausted and len(running) < max(1, min(max_workers, width())):
                step = next(queue, None)
                if step is None:
                    exhausted = True
                    break
                running[pool.submit(fn, step[1])] = step[0]
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)] = future.result()
    return [results[i] for i in range(len(items))]
