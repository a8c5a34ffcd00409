"""Checks of a node's CIK with Exosite: when one may start, and what a verdict triggers.

A node whose announce says Exosite refuses its CIK (``cik_rejected``), or offers
another CIK (``cik``) than the one stored, has the stored CIK checked; if
Exosite refuses it, the offered one is checked next and adopted if Exosite
accepts it. A node that offers its CIK when gatewayd holds none has that one
checked, and adopted if accepted; if not, its announce goes on as one without
it. At most one check is started per ``check_interval`` seconds (on the
monotonic clock) per node, and never two at once; its other announces are
answered meanwhile as if they said nothing of the kind.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from gatewayd.core.events import Announced, CikChecked, Verdict
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.secret import Secret
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
        self._offers: dict[str, Announced] = {}
        """Announces whose offered CIK is checked where none is stored: gone on with if it
        is not adopted."""
        self._second: dict[str, tuple[Secret, bool]] = {}
        """The CIK a node offered beside the stored one being checked, and whether it said
        its CIK is refused."""
        self._replacing: dict[str, str] = {}
        """Nodes whose stored CIK Exosite refused (and why) while their offered one is
        checked."""

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
        self._second.pop(sn, None)

    def announced(self, event: Announced, adopt: bool) -> Secret | None:
        """Note an announce whose check was just started; the CIK to check now (the offered
        one, when there is none stored to check first)."""
        if adopt:
            self._offers[event.sn] = event
            return event.cik
        if event.cik is not None and self.under_way(event.sn):
            self._second[event.sn] = (event.cik, event.cik_rejected)
        return None

    def needed(self, sn: str, stored: Secret) -> bool:
        """Whether the stored CIK must be checked: the node says it is refused, or offers
        another."""
        second = self._second.get(sn)
        if second is None or second[1] or second[0] != stored:
            return True
        self.done(sn)
        return False

    def after(
        self, event: CikChecked
    ) -> Announced | tuple[Trigger, Secret | None, str, str | None]:
        """What a verdict leads to: the trigger to fire (with the CIK, the detail and the
        model that go with it), or the announce to go on with, its offered CIK set aside."""
        sn, verdict = event.sn, event.verdict
        second = self._second.get(sn)
        self._under_way.discard(sn)
        self._second.pop(sn, None)
        offer = self._offers.pop(sn, None)
        if offer is not None:
            if verdict is Verdict.ACCEPTED:
                return Trigger.ADOPTED, event.cik, "", offer.model
            return dataclasses.replace(offer, cik=None, response=None)
        refusal = self._replacing.pop(sn, None)
        if refusal is not None:  # the stored CIK was refused; this is the node's own
            if verdict is Verdict.ACCEPTED:
                return Trigger.ADOPTED, event.cik, refusal, None
            return Trigger.CIK_REFUSED, None, refusal, None
        if verdict is Verdict.REFUSED and second is not None and second[0] != event.cik:
            self._replacing[sn] = event.detail
            self._under_way.add(sn)
            return Trigger.CHECK_OFFERED, second[0], "", None
        return VERDICTS[verdict], event.cik, event.detail, None


def found(node: Node | None, cik: Secret | None, checks: Checks, *, auto_reenable: bool) -> Trigger:
    """The trigger of a keystore read's answer: ``cik``, the CIK stored for ``node`` (None
    if there is none), maybe with a check of it under way."""
    if cik is not None and node is not None and checks.under_way(node.sn):
        if not checks.needed(node.sn, cik):  # it offered the very CIK stored
            return Trigger.CIK_FOUND
        return Trigger.CHECK_FOUND
    if cik is not None:
        return Trigger.CIK_FOUND
    if node is not None and node.state is State.ACTIVATING and node.reason is Reason.CIK_REVOKED:
        # a 409 after a refused CIK: the device must be re-enabled before a new one
        return Trigger.CIK_REVOKED_AUTO if auto_reenable else Trigger.CIK_REVOKED
    if node is not None and node.state is State.ACTIVATING and node.uncertain:
        # a 409, nothing stored, and our own request may have been given the CIK: lost (a
        # rotation re-enables the serial again: it has the vendor token)
        auto = auto_reenable or node.reason is Reason.ROTATION
        return Trigger.CIK_LOST_AUTO if auto else Trigger.CIK_LOST
    return Trigger.CIK_MISSING
