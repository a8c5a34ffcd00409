"""Which trigger an announce is, for the node's state: the guards, in the order they apply.

- a new serial while ``max_pending`` nodes wait: come back later;
- a node whose serial gatewayd is re-enabling: pending;
- a node offering its CIK (``"cik"``) when gatewayd holds none for it (a new
  serial, a node rejected or needing a re-enable), gatewayd can prove whose a CIK
  is (a vendor token), Exosite could know the serial, and a check of that CIK is
  due: the CIK is checked with Exosite, and adopted if it is the serial's own;
  its announces while the check is under way wait for its verdict;
- a rejected node after ``rejected_retry_after``: asked about again;
- an activated node saying Exosite refuses its CIK (``"cik_rejected": true``), or
  offering another one that could be adopted, and a check is due: its stored CIK
  is checked.

Without a vendor token a CIK an announce offers is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gatewayd.core.checks import may_check
from gatewayd.core.events import Announced
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import Trigger

HELD: Final = frozenset({State.REJECTED, State.NEEDS_REENABLE})
"""States a node is held in until ``rejected_retry_after`` has passed."""
HOLDS_NO_CIK: Final = frozenset({None, State.REJECTED, State.NEEDS_REENABLE})
"""States in which gatewayd holds no CIK for the node (None: no record)."""


@dataclass(frozen=True, slots=True)
class Guards:
    """The engine's answers to the questions a guard asks."""

    busy: Callable[[], bool]
    reenabling: Callable[[Node], bool]
    held_over: Callable[[Node], bool]
    check: Callable[[str, Secret | None], bool]
    """Whether a check of a CIK (None: the stored one) as the serial's may start now; it
    is started if so."""
    checking: Callable[[str], bool]
    """Whether a check of a CIK of the serial is under way."""


def trigger(event: Announced, node: Node | None, guards: Guards, *, adopt: bool) -> Trigger:
    """``adopt``: a CIK a node offers may be adopted (gatewayd can prove whose it is)."""
    state = None if node is None else node.state
    if node is None and guards.busy():
        return Trigger.ANNOUNCE_BUSY  # no record and no request: come back later
    if node is not None and guards.reenabling(node):
        return Trigger.ANNOUNCE_REENABLING
    if state in HOLDS_NO_CIK and guards.checking(event.sn):
        return Trigger.ANNOUNCE_CHECKING  # the verdict on the CIK it offered answers it
    held_over = node is not None and node.state in HELD and guards.held_over(node)
    offered = event.cik if adopt else None
    if (
        offered is not None
        and state in HOLDS_NO_CIK
        and may_check(node, held_over=held_over)
        and guards.check(event.sn, offered)
    ):
        return Trigger.ANNOUNCE_ADOPT
    if held_over:
        return Trigger.ANNOUNCE_LATE
    asks = event.cik_rejected or offered is not None
    if asks and state is State.ACTIVATED and guards.check(event.sn, None):
        return Trigger.ANNOUNCE_CHECK
    return Trigger.ANNOUNCE
