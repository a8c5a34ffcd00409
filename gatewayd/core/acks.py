"""Whether the broker still acknowledges gatewayd's QoS 1 publishes.

Pure and clock-driven like the limiter: the broker link tells the watch of each
publish, each acknowledgement (PUBACK) and each connect and disconnect, with the
monotonic time, and asks :meth:`AckWatch.check` what to do. The watch counts
publishes, not message ids, so an acknowledgement that overtakes the count of its
own publish (paho's thread is faster than the caller's) is no special case.

Publishes stall when some are waiting and, while connected, neither an
acknowledgement nor a first publish has come for ``bound`` seconds. A stall is
one episode however long it lasts: :meth:`check` says ``STALLED`` once (log it,
reconnect), ``STILL`` each further ``bound`` without progress (reconnect again,
quietly), and ``RECOVERED`` once an acknowledgement has come since.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Turn(enum.Enum):
    STALLED = "stalled"
    """Publishes have just stalled: a new episode."""
    STILL = "still"
    """Still no acknowledgement, ``bound`` seconds after the last check said so."""
    RECOVERED = "recovered"
    """An acknowledgement came after a stall (or nothing waits any more)."""


@dataclass(frozen=True, slots=True)
class AckState:
    """What the status shows: publishes waiting, and for how long they have stalled."""

    waiting: int
    stalled_for: float | None
    """Seconds since the broker last made progress, while stalled; else None."""


class AckWatch:
    def __init__(self, bound: float) -> None:
        if bound <= 0:
            raise ValueError("the bound must be a positive number of seconds")
        self.bound = bound
        self.waiting = 0
        """Publishes not acknowledged yet (negative for a moment if an ack overtakes)."""
        self._connected = False
        self._progress = 0.0
        """The last sign of life: an ack, a publish into an empty window, a connect."""
        self._acked_at: float | None = None
        """When the last acknowledgement came."""
        self._stalled_since: float | None = None
        """The last progress before the current episode, while one lasts."""
        self._checked = 0.0
        """When :meth:`check` last said STALLED or STILL."""

    # ------------------------------------------------------------ what happens

    def sent(self, now: float) -> None:
        if self.waiting <= 0:
            self._progress = now  # nothing was waiting: the clock starts here
        self.waiting += 1

    def acked(self, now: float) -> None:
        self.waiting -= 1
        self._progress = self._acked_at = now

    def connected(self, now: float) -> None:
        """The link is up: what waits is sent again, and gets ``bound`` seconds anew."""
        self._connected = True
        self._progress = now

    def disconnected(self) -> None:
        self._connected = False

    # --------------------------------------------------------------- verdicts

    @property
    def stalled(self) -> bool:
        return self._stalled_since is not None

    def due(self) -> float | None:
        """When :meth:`check` may next have something to say (monotonic), if ever."""
        if self._stalled_since is not None:
            if self._recovered():
                return self._stalled_since  # recovered: say so now
            return self._still_at() if self._connected else None
        if self._connected and self.waiting > 0:
            return self._progress + self.bound
        return None

    def check(self, now: float) -> Turn | None:
        if self._stalled_since is not None:
            if self._recovered():
                self._stalled_since = None
                return Turn.RECOVERED
            if self._connected and now >= self._still_at():
                self._checked = now
                return Turn.STILL
            return None
        if self._connected and self.waiting > 0 and now >= self._progress + self.bound:
            self._stalled_since, self._checked = self._progress, now
            return Turn.STALLED
        return None

    def _still_at(self) -> float:
        """When a stall goes on long enough to be said again: ``bound`` after the last time
        it was, or after the last connect."""
        return max(self._checked, self._progress) + self.bound

    def _recovered(self) -> bool:
        """An acknowledgement since the episode began, or nothing left waiting (a reconnect
        alone is no recovery)."""
        since = self._stalled_since
        acked = self._acked_at is not None and since is not None and self._acked_at > since
        return acked or self.waiting <= 0

    def state(self, now: float) -> AckState:
        since = self._stalled_since
        return AckState(max(self.waiting, 0), None if since is None else now - since)
