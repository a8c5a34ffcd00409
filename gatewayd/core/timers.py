"""When things happen: exponential backoff, and a timer heap for the engine.

Entries are never removed when they stop being wanted; instead the owner
supplies ``live(when, key)``, and dead entries are dropped when they reach the
top. Pure: it holds numbers and keys, and never reads a clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator


class Timers:
    def __init__(self, live: Callable[[float, str], bool]) -> None:
        self._heap: list[tuple[float, str]] = []
        self._live = live

    def push(self, when: float, key: str) -> None:
        heapq.heappush(self._heap, (when, key))

    def next(self) -> float | None:
        """The earliest live deadline, or None."""
        while self._heap:
            when, key = self._heap[0]
            if self._live(when, key):
                return when
            heapq.heappop(self._heap)
        return None

    def due(self, now: float) -> Iterator[tuple[float, str]]:
        """Pop and yield every live entry due at ``now``, earliest first."""
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            if self._live(when, key):
                yield when, key

    def __len__(self) -> int:
        return len(self._heap)


def backoff_ceiling(attempt: int, base: float, factor: float, cap: float) -> float:
    """The upper bound of the ``attempt``-th delay (1-based), ``base * factor**(attempt-1)``.

    Never above ``cap``. Callers draw the actual delay uniformly below it ("full jitter").
    """
    exponent = min(max(attempt - 1, 0), 64)
    return min(cap, base * factor**exponent)
