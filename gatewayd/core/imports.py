"""A node's record and CIK imported from a bundle while gatewayd runs (``gatewayctl import``).

An import is not a move of the node's state machine: it takes the bundle's record
as it stands, as gatewayd takes the records it finds at start, and then finishes
what that record left unfinished (:func:`unfinished`). What the running gatewayd
holds already is not replaced by the bundle's word alone:

- a node with a request, a check or a re-enable under way is refused: imported
  again once it is answered, it is then decided on as below;
- a node whose stored CIK is the bundle's, or for which the bundle holds no CIK
  while gatewayd knows the node, is left as it is;
- a node whose stored CIK differs from the bundle's is kept as it is, unless the
  operator prefers the bundle: then the stored CIK is retired (kept apart, never
  handed out again; the daemon does that before it hands the entry over, and a
  CIK it cannot retire is not replaced) and the bundle's stored;
- no CIK the gateway has retired (Exosite refused it, it was rotated, or an import
  replaced it), however long ago, is taken back from a bundle: the daemon refuses
  such an entry. The CIKs a bundle lists as retired for a node are kept with the
  gateway's before its entry is taken or left as it is.

A node taken has its CIK stored (durably, as any CIK) before its record, the
journal line ``imported`` and the operator's answer; a node that was waiting for
its credentials (pending, rejected, needing a re-enable) is sent them at once.
"""

from __future__ import annotations

import logging
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action, Log, Publish, Result, SaveNode, StoreCik
from gatewayd.core.book import Book
from gatewayd.core.events import Imported
from gatewayd.core.model import Node, State
from gatewayd.core.transitions import Trigger

UNDER_WAY: Final = frozenset({State.ACTIVATING, State.RECOVERING, State.ROTATING})
"""States with a request or a keystore read under way: a node in one is not imported."""
UNCHANGED: Final = "already held, unchanged"
"""The operator's answer for a node left as it is."""
KEPT: Final = (
    "kept as stored: its CIK differs from the bundle's (--prefer-bundle takes the bundle's)"
)
"""The answer for a node whose stored CIK differs from the bundle's."""
RETIRED: Final = "not imported: its CIK in the bundle was retired here (refused, or rotated away)"
"""The answer for an entry whose CIK the gateway has retired."""
UNRETIRED: Final = "not imported: the CIK stored for it cannot be retired"
"""The answer for an entry that would replace a stored CIK the keystore cannot retire."""
UNKEPT: Final = "not imported: the CIKs the bundle has retired for it cannot be kept"
"""The answer for an entry whose retired CIKs the keystore cannot keep."""


def unfinished(node: Node, *, reenabling: bool) -> Trigger | None:
    """What a record found at start (or imported) left unfinished: a request in flight
    (its keystore is read first), a re-enable gatewayd had started, a rotation."""
    if node.state is State.ACTIVATING:
        return Trigger.RESTARTED
    if reenabling:
        return Trigger.RESTARTED_REENABLING
    if node.state is State.ROTATING:
        return Trigger.RESTARTED_ROTATING
    return None


def replaces(event: Imported) -> bool:
    """Whether taking the entry replaces a stored CIK (which is retired first)."""
    stored, cik = event.stored, event.cik
    return stored is not None and cik is not None and stored != cik


def refusal(event: Imported, current: Node | None, *, under_way: bool) -> Result | None:
    """Why the bundle's entry is not taken (an answer for the operator), or None if it is.
    ``current``: the running record of its serial; ``under_way``: a check, a republish or
    a re-enable of it is."""
    sn = event.node.sn
    stored, cik = event.stored, event.cik
    differs = replaces(event)
    if under_way or (current is not None and current.state in UNDER_WAY):
        text = f"{sn}: not imported: a request about it is under way; import it again later"
        return Result(ok=False, message=text)
    if differs and not event.prefer_bundle:
        return Result(ok=False, message=f"{sn}: {KEPT}")
    if current is not None and not differs and (stored is not None or cik is None):
        return Result(ok=True, message=f"{sn}: {UNCHANGED}")
    return None


def taken(event: Imported, current: Node | None, book: Book) -> list[Action]:
    """What taking the bundle's entry comes to, once its record is in ``book``; a stored CIK
    it replaces has been retired already (:func:`replaces`)."""
    node, cik, stored = event.node, event.cik, event.stored
    actions: list[Action] = []
    said = "imported from a bundle"
    if cik is not None and stored != cik:
        if stored is not None:  # retired by the daemon, as it was asked to take this entry
            said += "; the CIK stored before is retired"
        actions.append(StoreCik(node.sn, node.vendor, node.model, cik))
    elif cik is None:
        said += ", without a CIK"
    actions += [SaveNode(node), Log("imported", logging.INFO, said, node.sn, node.state)]
    waiting = current is not None and current.state is not State.ACTIVATED
    if waiting and cik is not None and node.state is State.ACTIVATED:
        answer = replies.activated(node, cik)
        actions.append(Publish(answer, book.responses(node.sn)))
    return [*actions, Result(ok=True, message=f"{node.sn}: imported")]
