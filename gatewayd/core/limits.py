"""Limits on what nodes can make gatewayd do: announces per node, and drops counted.

Pure and clock-driven like the engine: the daemon's main thread asks
:meth:`AnnounceLimiter.allow` for each announce and logs what it is told to.
Memory is bounded: at most ``MAX_TRACKED`` serials are remembered, the least
recently seen forgotten first (a forgotten serial starts with a full bucket,
which is what an idle one has anyway).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

MAX_TRACKED: Final = 10_000
WARN_WINDOW: Final = 60.0
"""A node over its limit is warned about at most once per this many seconds."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    dropped: int = 0
    warned_at: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    warn: bool = False
    """The first drop for this node in the current window: say so, once."""
    dropped: int = 0
    """Announces of this node dropped since it was last warned about."""


class AnnounceLimiter:
    """A token bucket per serial: ``burst`` announces at once, ``rate`` per second after."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.dropped = 0
        """Announces dropped since the start, for every node."""

    def allow(self, sn: str) -> Verdict:
        now = self._clock()
        bucket = self._buckets.get(sn)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at=now)
            self._buckets[sn] = bucket
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(sn)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict(allowed=True)
        self.dropped += 1
        bucket.dropped += 1
        if bucket.warned_at is not None and now - bucket.warned_at < WARN_WINDOW:
            return Verdict(allowed=False)
        dropped, bucket.dropped, bucket.warned_at = bucket.dropped, 0, now
        return Verdict(allowed=False, warn=True, dropped=dropped)
