"""Checks of a node's CIK with Exosite: when one may start, and what a verdict triggers.

A node whose announce says Exosite refuses its CIK (``cik_rejected``) has its
stored CIK checked; a node that offers its CIK (``cik``) when gatewayd holds none
has that one checked. At most once per ``check_interval`` seconds (on the
monotonic clock) per node, and never two at once; its other announces are
answered meanwhile as if they said nothing of the kind.
"""

from __future__ import annotations

from typing import Final

from gatewayd.core.events import Announced, Verdict
from gatewayd.core.transitions import Trigger

VERDICTS: Final = {
    Verdict.ACCEPTED: Trigger.CIK_ACCEPTED,
    Verdict.REFUSED: Trigger.CIK_REFUSED,
    Verdict.UNKNOWN: Trigger.CHECK_UNKNOWN,
}
"""The trigger of each verdict."""


class Checks:
    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._under_way: set[str] = set()
        self.offers: dict[str, Announced] = {}
        """The announces whose offered CIK is being checked, to go on with if it is not
        adopted."""

    def start(self, sn: str, now: float, interval: float) -> bool:
        """Start a check of ``sn``'s CIK, unless one is under way or started within
        ``interval`` seconds of ``now``."""
        last = self._started.get(sn)
        if sn in self._under_way or (last is not None and now - last < interval):
            return False
        self._started[sn] = now
        self._under_way.add(sn)
        return True

    def under_way(self, sn: str) -> bool:
        """A check of ``sn``'s CIK has started and has no verdict yet."""
        return sn in self._under_way

    def done(self, sn: str) -> None:
        self._under_way.discard(sn)
