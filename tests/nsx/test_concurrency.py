"""The adaptive in-flight limit (AIMD) as a pure class, a table of cases; and its gate."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from nsx_route_gc.nsx.concurrency import AdaptiveLimit, Change, InFlightGate, paced_map


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Answer:
    seconds: float
    status: int | None = 200
    saturated: bool = True
    advance: float = 0.0  # the clock moves this much before the answer


SLOW = Answer(0.5)  # 0.5 s x 90/s = 45 wanted in flight
FAST = Answer(0.02)  # 0.02 s x 90/s = 1.8: the token bucket, not the width, holds back


@dataclass(frozen=True)
class Case:
    name: str
    start: int
    maximum: int
    answers: list[Answer]
    limit: int
    peak: int
    changes: list[tuple[int, int, str]]
    rate: float | None = 90.0


CASES = [
    Case("fast answers never widen", 8, 32, [FAST] * 50, 8, 8, []),
    Case(
        "slow answers double the width each round trip before any 429/503",
        2,
        32,
        [SLOW] * 6,
        8,
        8,
        [
            (2, 3, "slow-answers"),
            (3, 4, "slow-answers"),
            (4, 5, "slow-answers"),
            (5, 6, "slow-answers"),
            (6, 7, "slow-answers"),
            (7, 8, "slow-answers"),
        ],
    ),
    Case(
        "never beyond the maximum",
        30,
        32,
        [SLOW] * 10,
        32,
        32,
        [(30, 31, "slow-answers"), (31, 32, "slow-answers")],
    ),
    Case("unused width does not grow", 8, 32, [Answer(0.5, saturated=False)] * 20, 8, 8, []),
    Case("a connection error says nothing", 8, 32, [Answer(0.5, status=None)] * 5, 8, 8, []),
    Case(
        "an error answer still measures the manager",
        4,
        32,
        [Answer(0.5, status=404)],
        5,
        5,
        [(4, 5, "slow-answers")],
    ),
    Case("a 429 halves", 16, 32, [Answer(0.5, status=429)], 8, 16, [(16, 8, "429")]),
    Case("a 503 halves", 16, 32, [Answer(0.5, status=503)], 8, 16, [(16, 8, "503")]),
    Case(
        "a round trip's 503s halve once",
        16,
        32,
        [
            SLOW,
            Answer(0.5, status=503),
            Answer(0.5, status=503, advance=0.1),
            Answer(0.5, status=503, advance=0.1),
        ],
        8,
        17,
        [(16, 17, "slow-answers"), (17, 8, "503")],
    ),
    Case(
        "503s a round trip apart halve again",
        16,
        32,
        [SLOW, Answer(0.5, status=503), Answer(0.5, status=503, advance=0.6)],
        4,
        17,
        [(16, 17, "slow-answers"), (17, 8, "503"), (8, 4, "503")],
    ),
    Case("never below one", 1, 32, [Answer(0.5, status=429, advance=5.0)] * 3, 1, 1, []),
    Case(
        "503s before any other answer halve once per their own round trip",
        8,
        32,
        [
            Answer(0.5, status=503),
            Answer(0.5, status=503, advance=0.1),
            Answer(0.5, status=503, advance=0.5),
        ],
        2,
        8,
        [(8, 4, "503"), (4, 2, "503")],
    ),
    Case(
        "after a 429, one more per round trip (a full window of answers)",
        8,
        32,
        [SLOW, Answer(0.5, status=429)] + [SLOW] * 8,
        5,
        9,
        [(8, 9, "slow-answers"), (9, 4, "429"), (4, 5, "slow-answers")],
    ),
    Case(
        "no rate limit: slow answers widen",
        8,
        32,
        [SLOW],
        9,
        9,
        [(8, 9, "slow-answers")],
        rate=None,
    ),
    Case(
        "no rate limit: fast answers widen too",
        8,
        32,
        [FAST],
        9,
        9,
        [(8, 9, "slow-answers")],
        rate=None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adaptive_limit(case: Case) -> None:
    clock = Clock()
    limit = AdaptiveLimit(case.start, case.maximum, rate=case.rate, clock=clock)
    changes: list[tuple[int, int, str]] = []
    for answer in case.answers:
        clock.now += answer.advance
        change = limit.answered(answer.seconds, answer.status, saturated=answer.saturated)
        if change is not None:
            changes.append((change.before, change.after, change.why))
    assert changes == case.changes
    assert (limit.limit, limit.peak) == (case.limit, case.peak)


def test_the_smoothed_round_trip_follows_the_answers() -> None:
    limit = AdaptiveLimit(8, 8, rate=90.0, clock=Clock())
    assert limit.round_trip is None
    limit.answered(1.0, 200, saturated=False)
    limit.answered(0.2, 200, saturated=False)
    assert limit.round_trip == pytest.approx(0.9)


def test_a_maximum_below_the_start_is_the_start() -> None:
    limit = AdaptiveLimit(12, 4, rate=90.0, clock=Clock())
    assert (limit.maximum, limit.limit) == (12, 12)
    with pytest.raises(ValueError, match="1 or more"):
        AdaptiveLimit(0, 4, rate=90.0, clock=Clock())


def test_the_gate_holds_callers_beyond_the_limit_and_reports_changes() -> None:
    limit = AdaptiveLimit(2, 4, rate=90.0, clock=Clock())
    changes: list[Change] = []
    gate = InFlightGate(limit, on_change=changes.append)
    first = gate.enter()
    gate.enter()
    third_in = threading.Event()

    def third() -> None:
        gate.enter()
        third_in.set()

    waiter = threading.Thread(target=third)
    waiter.start()
    assert not third_in.wait(0.1)  # two in flight: the third waits
    gate.leave(0.5, 200, first)  # a caller was waiting and the answer was slow: wider
    assert third_in.wait(5)
    waiter.join()
    assert changes == [Change(2, 3, "slow-answers")]
    gate.leave(0.5, 503, first)
    assert (limit.limit, gate.peak) == (1, 3)
    assert changes[-1] == Change(3, 1, "503")


def test_a_round_trip_that_filled_the_gate_doubles_the_limit_however_its_answers_come() -> None:
    """Slow start: every call out while the gate was full counts, even one that comes back
    after the first answer freed a slot (answers of a round trip come back together)."""
    limit = AdaptiveLimit(4, 32, rate=90.0, clock=Clock())
    gate = InFlightGate(limit)
    tickets = [gate.enter() for _ in range(4)]  # the fourth takes the last slot
    for ticket in tickets:
        gate.leave(0.5, 200, ticket)
    assert limit.limit == 8
    # Fewer calls than the limit never fill it: no growth.
    tickets = [gate.enter() for _ in range(3)]
    for ticket in tickets:
        gate.leave(0.5, 200, ticket)
    assert limit.limit == 8


def test_paced_map_keeps_order_and_runs_at_most_the_width_at_once() -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    widths = iter([1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.01)
        with lock:
            running -= 1
        return n * n

    def width() -> int:
        return next(widths, 3)

    assert paced_map(work, list(range(10)), width=width, max_workers=8) == [
        n * n for n in range(10)
    ]
    assert 1 <= most <= 3


def test_paced_map_never_exceeds_its_workers_and_raises_the_first_error() -> None:
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 1:
            raise ValueError("boom")
        return n

    with pytest.raises(ValueError, match="boom"):
        paced_map(work, list(range(50)), width=lambda: 2, max_workers=1)
    assert started == [0, 1]  # one at a time; nothing started after the failure
