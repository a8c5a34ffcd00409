"""The rate limit of requests to Exosite: at most ``max_rate`` start per second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Lets at most ``rate`` callers through per second, spaced evenly."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._interval = 1.0 / rate

    def wait(self, stop: threading.Event) -> bool:
        """Block until the caller's slot; False if ``stop`` was set meanwhile."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        return not stop.wait(delay) if delay > 0 else not stop.is_set()
