"""Checks of a node's CIK with Exosite: when one may start, and what a verdict triggers.

A node whose announce says Exosite refuses its CIK (``cik_rejected``), or offers
another CIK (``cik``) than the one stored, has the stored CIK checked; if
Exosite refuses it, the offered one is checked next, as the serial's own, and
adopted if it is. A node that offers its CIK when gatewayd holds none has that
one checked as the serial's own, and adopted if it is; if not, its announce
goes on as one without it. An offered CIK is only ever checked, and adopted,
when gatewayd can prove whose it is: with a vendor token (``Settings.adopt``).

Limits, on the monotonic clock: one check of a node at a time; each CIK
checked for a node (the stored one, and each one offered) at most once per
``check_interval`` seconds, so a CIK offered once does not hold back another;
what is remembered of earlier checks is pruned after ``check_interval`` and
bounded by :data:`MAX_REMEMBERED`. The checks under way count against
``max_pending`` as activations do (:meth:`Checks.count`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
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
"""The trigger of each verdict on a stored CIK."""
MAX_REMEMBERED: Final = 10_000
"""Checks remembered for their ``check_interval`` at most; the oldest is forgotten first."""


@dataclass(slots=True)
class _Check:
    """A check under way, and what it was started for."""

    offer: Announced | None = None
    """The announce whose offered CIK is checked where none is stored: gone on with,
    without it, if it is not adopted."""
    offered: Secret | None = None
    """A CIK the node offered beside the stored one: checked as its own if the stored
    one is refused."""
    rejected: bool = False
    """The node said its CIK is refused."""
    refusal: str | None = None
    """Set once Exosite refused the stored CIK (and why) and the offered one is checked."""
    cik: Secret | None = None
    """The CIK on its way to Exosite (None: not sent yet): a check is sent once, and only
    the verdict on that CIK counts."""
    refused: Secret | None = None
    """The stored CIK Exosite refused, while the offered one is checked."""


@dataclass(frozen=True, slots=True)
class Next:
    """What a verdict leads to: the trigger to fire, with the CIK, the detail and the model
    that go with it; ``retired``: the stored CIK Exosite refused, to retire once the one
    adopted in its place is stored."""

    trigger: Trigger
    cik: Secret | None = None
    detail: str = ""
    model: str | None = None
    retired: Secret | None = None


class Checks:
    def __init__(self) -> None:
        self._under_way: dict[str, _Check] = {}
        self._done: OrderedDict[tuple[str, Secret | None], float] = OrderedDict()
        """When each (serial, CIK) was last checked, oldest first; None stands for the
        stored CIK."""

    def start(self, sn: str, cik: Secret | None, now: float, interval: float) -> bool:
        """Start a check of ``cik`` (None: the stored CIK) as ``sn``'s, unless one of ``sn``
        is under way or this one was made within ``interval`` seconds of ``now``."""
        if sn in self._under_way or not self._due((sn, cik), now, interval):
            return False
        self._under_way[sn] = _Check()
        return True

    def _due(self, key: tuple[str, Secret | None], now: float, interval: float) -> bool:
        """Whether ``key`` may be checked now; if so, it counts as checked now."""
        while self._done:  # prune what no longer holds anything back
            oldest, when = next(iter(self._done.items()))
            if now - when < interval and len(self._done) < MAX_REMEMBERED:
                break
            del self._done[oldest]
        last = self._done.get(key)
        if last is not None and now - last < interval:
            return False
        self._done[key] = now
        self._done.move_to_end(key)
        return True

    def begin(self, sn: str, cik: Secret) -> None:
        """Start a check of ``cik``, stored for ``sn``, that must be made, whatever the
        limits."""
        self._under_way[sn] = _Check(cik=cik)

    def under_way(self, sn: str) -> bool:
        """A check of a CIK of ``sn`` has started and has no verdict yet."""
        return sn in self._under_way

    def count(self) -> int:
        """Checks under way."""
        return len(self._under_way)

    def remembered(self) -> int:
        """Checks remembered for their ``check_interval``."""
        return len(self._done)

    def done(self, sn: str) -> None:
        """Forget the check of ``sn`` under way: a verdict that comes for it is ignored."""
        self._under_way.pop(sn, None)

    def unsent(self, sn: str) -> None:
        """Forget the check of ``sn``, if it is still waiting for the stored CIK (none was
        found to send)."""
        check = self._under_way.get(sn)
        if check is not None and check.cik is None:
            del self._under_way[sn]

    def announced(self, event: Announced, *, adopt: bool, offers: bool) -> Secret | None:
        """Note an announce whose check was just started; the CIK to check now (the offered
        one, when there is none stored to check first). ``adopt``: its offered CIK is
        checked where none is stored; ``offers``: a CIK it offers may be adopted."""
        check = self._under_way.get(event.sn)
        if check is None:
            return None
        if adopt:
            check.offer, check.cik = event, event.cik
            return event.cik
        check.rejected = event.cik_rejected
        if offers:
            check.offered = event.cik
        return None

    def read(self, sn: str, stored: Secret) -> bool:
        """The stored CIK was read while a check of ``sn`` is under way: whether to send it
        to Exosite now (once; not when the node offered the very CIK stored and did not
        say it is refused: then there is nothing to check)."""
        check = self._under_way.get(sn)
        if check is None or check.cik is not None:
            return False
        if not check.rejected and check.offered == stored:
            self.done(sn)
            self._done.pop((sn, None), None)  # not checked after all
            return False
        check.cik = stored
        return True

    def after(self, event: CikChecked, now: float, interval: float) -> Announced | Next | None:
        """What a verdict leads to: the trigger to fire, or the announce to go on with, its
        offered CIK set aside; None for a verdict no check waits for (the check was
        forgotten, or was of another CIK): it decides nothing."""
        sn, verdict = event.sn, event.verdict
        check = self._under_way.get(sn)
        if check is None or check.cik != event.cik:
            return None
        del self._under_way[sn]
        if check.offer is not None:
            if verdict is Verdict.ACCEPTED:
                return Next(Trigger.ADOPTED, event.cik, event.detail, check.offer.model)
            return dataclasses.replace(check.offer, cik=None, response=None)
        if check.refusal is not None:  # the stored CIK was refused; this is the node's own
            if verdict is Verdict.ACCEPTED:
                return Next(Trigger.ADOPTED, event.cik, check.refusal, retired=check.refused)
            return Next(Trigger.CIK_REFUSED, check.refused, check.refusal)
        offered = check.offered
        if (
            verdict is Verdict.REFUSED
            and offered is not None
            and offered != event.cik
            and self._due((sn, offered), now, interval)
        ):
            replacing = _Check(refusal=event.detail, cik=offered, refused=event.cik)
            self._under_way[sn] = replacing
            return Next(Trigger.CHECK_OFFERED, offered)
        return Next(VERDICTS[verdict], event.cik, event.detail)


def may_check(node: Node | None, *, held_over: bool) -> bool:
    """Whether Exosite could know the serial: not when its last answer was a 404 (or a
    403 for its vendor and model) and ``rejected_retry_after`` has not passed."""
    if node is None or node.state is not State.REJECTED or held_over:
        return True
    return node.reason not in {Reason.UNKNOWN_SERIAL, Reason.INVALID_VENDOR_MODEL}


def revoking(node: Node) -> bool:
    """``node`` is activated again because Exosite refused its CIK."""
    return node.state in {State.ACTIVATING, State.RECOVERING} and node.reason is Reason.CIK_REVOKED


def found(
    node: Node | None,
    cik: Secret | None,
    checks: Checks,
    *,
    auto_reenable: bool,
    retired: bool = False,
) -> Trigger:
    """The trigger of a keystore read's answer: ``cik``, the CIK stored for ``node`` (None
    if there is none; ``retired``: a CIK of the serial was retired), maybe with a check of
    it under way."""
    if cik is not None and node is not None and checks.under_way(node.sn):
        return Trigger.CHECK_FOUND if checks.read(node.sn, cik) else Trigger.CIK_FOUND
    if cik is not None and node is not None and revoking(node):
        # the record says Exosite refused the node's CIK: this one may be that CIK, not
        # yet retired, or the one issued since
        checks.begin(node.sn, cik)
        return Trigger.REVOKED_FOUND
    if cik is not None:
        return Trigger.CIK_FOUND
    if node is not None and node.state is State.ACTIVATED and retired:
        return Trigger.RETIRED_ONLY_AUTO if auto_reenable else Trigger.RETIRED_ONLY
    if node is not None and node.state is State.ACTIVATING and node.reason is Reason.CIK_REVOKED:
        # a 409 after a refused CIK: the device must be re-enabled before a new one
        return Trigger.CIK_REVOKED_AUTO if auto_reenable else Trigger.CIK_REVOKED
    if node is not None and node.state is State.ACTIVATING and node.uncertain:
        # a 409, nothing stored, and our own request may have been given the CIK: lost (a
        # rotation re-enables the serial again: it has the vendor token)
        auto = auto_reenable or node.reason is Reason.ROTATION
        return Trigger.CIK_LOST_AUTO if auto else Trigger.CIK_LOST
    return Trigger.CIK_MISSING
