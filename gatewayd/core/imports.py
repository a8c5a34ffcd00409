"""A node's record and CIK imported from a bundle (``gatewayctl import``): what becomes of
each entry, the same whether gatewayd runs (the engine takes it) or is stopped
(gatewayctl writes the state folder itself).

An import is not a move of the node's state machine: it takes the bundle's record
as it stands, as gatewayd takes the records it finds at start, and then finishes
what that record left unfinished (:func:`unfinished`). What the gateway holds
already is not replaced by the bundle's word alone. :func:`decide` answers, for
each entry, from the record of its serial here, the CIK stored for it, the CIKs
retired for it and ``--prefer-bundle``, in this order:

- no CIK the gateway has retired (Exosite refused it, it was rotated, or an import
  replaced it), however long ago, is taken back from a bundle: the entry is refused;
- a node with a request, a check or a re-enable under way (or, gatewayd stopped,
  whose record says one was when it stopped) is refused: imported again once it is
  answered, it is then decided on as below;
- a node activated here with its CIK stored is kept as stored when the bundle's
  record of it is not activated, or holds no CIK (then it is already held);
- a node whose stored CIK differs from the bundle's is kept as stored, unless the
  operator prefers the bundle: then the stored CIK is retired (kept apart, never
  handed out again; retired before the bundle's is stored, and a CIK that cannot be
  retired is not replaced) and the bundle's stored;
- a node known here whose stored CIK is the bundle's, or for which the bundle holds
  no CIK, is left as it is (already held);
- any other entry is taken: a node unknown here, or one with no CIK stored for
  which the bundle holds one.

The CIKs a bundle lists as retired for a node are kept with the gateway's before its
entry is taken or left as it is. A node taken has its CIK stored (durably, as any
CIK) before its record, the journal line ``imported`` and the operator's answer; a
node that was waiting for its credentials in the running gatewayd (pending,
rejected, needing a re-enable) is sent them at once.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action, Log, Publish, Result, SaveNode, StoreCik
from gatewayd.core.book import Book
from gatewayd.core.events import Imported
from gatewayd.core.model import Node, Settings, State
from gatewayd.core.transitions import UNDER_WAY, unfinished

UNCHANGED: Final = "already held, unchanged"
"""The operator's answer for a node left as it is."""
KEPT: Final = (
    "kept as stored: its CIK differs from the bundle's (--prefer-bundle takes the bundle's)"
)
"""The answer for a node whose stored CIK differs from the bundle's."""
RETIRED: Final = "not imported: its CIK in the bundle was retired here (refused, or rotated away)"
"""The answer for an entry whose CIK the gateway has retired."""
BUSY: Final = "not imported: a request about it is under way; import it again later"
"""The answer for an entry of a node with something under way."""
UNRETIRED: Final = "not imported: the CIK stored for it cannot be retired"
"""The answer for an entry that would replace a stored CIK the keystore cannot retire."""
UNKEPT: Final = "not imported: the CIKs the bundle has retired for it cannot be kept"
"""The answer for an entry whose retired CIKs the keystore cannot keep."""


class Answer(enum.StrEnum):
    """What became of a bundle's entry, as gatewayctl counts it (the names are the keys of
    the running gatewayd's answer)."""

    IMPORTED = "imported"
    UNCHANGED = "unchanged"
    """Already held: left as it is."""
    KEPT = "kept"
    """Kept as stored: the bundle's CIK or record is not taken over what is held here."""
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Decision(Result):
    """What becomes of a bundle's entry: the operator's answer in words (``ok``,
    ``message``), and which of the answers counted it is."""

    answer: Answer = Answer.REFUSED


def left_under_way(node: Node | None, settings: Settings) -> bool:
    """Whether a record found with gatewayd stopped says something was under way when it
    stopped, which gatewayd finishes at its start
    (:func:`gatewayd.core.transitions.unfinished`)."""
    return node is not None and unfinished(node, settings) is not None


def replaces(event: Imported) -> bool:
    """Whether taking the entry replaces a stored CIK (which is retired first)."""
    stored, cik = event.stored, event.cik
    return stored is not None and cik is not None and stored != cik


def decide(event: Imported, current: Node | None, *, under_way: bool) -> Decision:
    """What becomes of the bundle's entry ``event``, the same whether gatewayd runs or not.
    ``current``: the record of its serial here; ``under_way``: a request, a check, a
    republish or a re-enable of it is (gatewayd stopped: :func:`left_under_way`)."""
    node, cik, stored = event.node, event.cik, event.stored
    sn = node.sn
    if cik is not None and cik in event.retired:
        return Decision(ok=False, message=f"{sn}: {RETIRED}", answer=Answer.REFUSED)
    if under_way or (current is not None and current.state in UNDER_WAY):
        return Decision(ok=False, message=f"{sn}: {BUSY}", answer=Answer.REFUSED)
    held = current is not None and current.state is State.ACTIVATED and stored is not None
    if held and cik is not None and cik != stored and node.state is not State.ACTIVATED:
        said = f"kept as stored: activated here, and the bundle's record of it is {node.state}"
        return Decision(ok=False, message=f"{sn}: {said}", answer=Answer.KEPT)
    if replaces(event) and not event.prefer_bundle:
        return Decision(ok=False, message=f"{sn}: {KEPT}", answer=Answer.KEPT)
    if current is not None and not replaces(event) and (stored is not None or cik is None):
        return Decision(ok=True, message=f"{sn}: {UNCHANGED}", answer=Answer.UNCHANGED)
    return Decision(ok=True, message=f"{sn}: imported", answer=Answer.IMPORTED)


def refusal(event: Imported, current: Node | None, *, under_way: bool) -> Decision | None:
    """Why the running gatewayd does not take the bundle's entry (an answer for the
    operator), or None if it does (:func:`decide`). ``current``: the running record of
    its serial; ``under_way``: a check, a republish or a re-enable of it is."""
    decision = decide(event, current, under_way=under_way)
    return None if decision.answer is Answer.IMPORTED else decision


def answer_of(refusal: Result | None) -> Answer:
    """Which answer the engine's word on an entry (:func:`refusal`) is."""
    if refusal is None:
        return Answer.IMPORTED
    return refusal.answer if isinstance(refusal, Decision) else Answer.REFUSED


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
