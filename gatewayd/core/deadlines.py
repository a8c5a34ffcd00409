"""The engine's deadlines, on the monotonic clock, beside records that hold wall time.

A node's record keeps wall-clock times: they are stored and shown (when it was
first seen, rejected, when its next attempt is due). Every interval is measured
on the monotonic clock instead, so that a clock stepped by NTP (a Raspberry Pi
boots without a real-time clock) neither fires every retry at once nor holds
them back: when a record is armed, its wall times are turned into monotonic
deadlines once, from how far they lie from the wall clock at that moment.
A next attempt read back from the state database is never further away than
``retry_cap``, an expiry warning never further than its window.

Pure: both clocks' readings are handed in.
"""

from __future__ import annotations

from typing import Final

from gatewayd.core.model import Node, Reason, State
from gatewayd.core.timers import Timers
from gatewayd.core.transitions import RETRIED

EXPIRY_WINDOW: Final = 24 * 3600.0
"""Exosite expires a device not activated within 24 h of being added."""


class Deadlines:
    """Retries, expiry warnings and rejections held, per serial, on the monotonic clock."""

    def __init__(self) -> None:
        self._retry: dict[str, float] = {}
        self._expiry: dict[str, float] = {}
        self._held: dict[str, float] = {}
        self._timers = Timers(self._live)

    def arm(self, before: Node | None, node: Node, now: float, wall: float, cap: float) -> None:
        """Take ``node``'s new record (``before`` it was this, or None): ``now`` is the
        monotonic clock, ``wall`` the wall clock its times were written against, ``cap``
        the longest a retry may be put off (``retry_cap``)."""
        sn = node.sn
        if node.state in RETRIED and node.next_attempt is not None:
            if (
                before is None
                or before.state is not node.state
                or before.next_attempt != (node.next_attempt)
            ):
                delay = min(max(node.next_attempt - wall, 0.0), cap)
                self._retry[sn] = now + delay
                self._timers.push(now + delay, sn)
        else:
            self._retry.pop(sn, None)
        if node.state is State.ACTIVATED or node.expiry_warned or node.reason is Reason.ROTATION:
            # a rotation re-enables an activated serial: its first activation is long past
            self._expiry.pop(sn, None)
        elif sn not in self._expiry:
            left = min(max(node.first_seen + EXPIRY_WINDOW - wall, 0.0), EXPIRY_WINDOW)
            self._expiry[sn] = now + left
            self._timers.push(now + left, sn)
        if node.rejected_at is None:
            self._held.pop(sn, None)
        elif before is None or before.rejected_at != node.rejected_at:
            self._held[sn] = now - max(wall - node.rejected_at, 0.0)

    def forget(self, sn: str) -> None:
        for table in (self._retry, self._expiry, self._held):
            table.pop(sn, None)

    def next(self) -> float | None:
        """The earliest deadline still wanted, or None."""
        return self._timers.next()

    def due(self, now: float) -> list[tuple[str, bool]]:
        """Each serial whose deadline has come: (serial, True for a retry, False for a
        warning), earliest first."""
        fired = []
        for when, sn in self._timers.due(now):
            fired.append((sn, self._retry.get(sn) == when))
        return fired

    def retry_in(self, sn: str, now: float) -> float:
        """Seconds until the node's next attempt (0 if none is scheduled)."""
        due = self._retry.get(sn)
        return 0.0 if due is None else max(0.0, due - now)

    def held_for(self, sn: str, now: float) -> float | None:
        """Seconds since the node was rejected (or found lost), if it is held."""
        since = self._held.get(sn)
        return None if since is None else now - since

    def waited(self, sn: str, now: float) -> float:
        """Seconds since the node was first seen, by its expiry deadline."""
        due = self._expiry.get(sn, now)
        return EXPIRY_WINDOW + now - due

    def _live(self, when: float, sn: str) -> bool:
        return self._retry.get(sn) == when or self._expiry.get(sn) == when
