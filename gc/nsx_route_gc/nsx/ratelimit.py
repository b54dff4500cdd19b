"""A client-side token bucket, so that the NSX manager's own rate limit (429) is rarely hit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; thread-safe.

    A caller that finds the bucket empty reserves its token anyway (the level goes below
    zero) and sleeps until that token would have been earned. Reserving under the lock and
    sleeping outside it keeps callers in arrival order without holding the lock while asleep.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"token bucket rate must be positive, got {rate}")
        # A tenth of a second's worth by default: a burst of a whole second on top of a full
        # steady rate would overshoot a per-second server limit close to ours.
        capacity = burst if burst is not None else max(1.0, rate / 10)
        if capacity < 1:
            raise ValueError(f"token bucket burst must be at least 1, got {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = capacity
        self._updated = clock()

    def acquire(self) -> float:
        """Take one token, sleeping first when none is available; returns the time slept."""
        with self._lock:
            now = self._clock()
            # max(): a clock that steps back must not drain the bucket.
            elapsed = max(0.0, now - self._updated)
            self._updated = now
            self._level = min(self.capacity, self._level + elapsed * self.rate) - 1
            wait = -self._level / self.rate if self._level < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
