"""The actions each :class:`~gatewayd.core.transitions.Effect` of a row stands for.

The engine hands a row's effects, the node's new record and the step that
caused it to :meth:`Effects.emit`, which returns the actions in the row's order.
Pure: the clock is read through the engine's, the responses waiting for a node
are taken from its book.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from gatewayd.core import imports, records, replies
from gatewayd.core.actions import (
    Action,
    Activate,
    Answer,
    CheckCik,
    DeleteNode,
    KeepRetired,
    Log,
    LookupCik,
    Publish,
    Reenable,
    RetireCik,
    SaveNode,
    StoreCik,
)
from gatewayd.core.book import Book
from gatewayd.core.deadlines import Deadlines
from gatewayd.core.model import Node, ResponseTarget, Settings, State
from gatewayd.core.records import Step
from gatewayd.core.transitions import Effect, Trigger

Emitter = Callable[["Effects", Node, Step], list[Action]]


class Effects:
    def __init__(
        self,
        book: Book,
        deadlines: Deadlines,
        clock: Callable[[], float],
        settings: Callable[[], Settings],
    ) -> None:
        self._book = book
        self._deadlines = deadlines
        self._clock = clock
        self._settings = settings

    def emit(self, effects: Iterable[Effect], node: Node, step: Step) -> list[Action]:
        actions: list[Action] = []
        for effect in effects:
            actions += _EMITTERS[effect](self, node, step)
        return actions

    def _save(self, node: Node, _step: Step) -> list[Action]:
        return [SaveNode(node)]

    def _request(self, node: Node, _step: Step) -> list[Action]:
        return [Activate(node.sn, node.vendor, node.model)]

    def _lookup(self, node: Node, _step: Step) -> list[Action]:
        return [LookupCik(node.sn, node.vendor, node.model)]

    def _reenable(self, node: Node, _step: Step) -> list[Action]:
        return [Reenable(node.sn, node.vendor, node.model)]

    def _store(self, node: Node, step: Step) -> list[Action]:
        return records.store(node, step)

    def _delete(self, node: Node, _step: Step) -> list[Action]:
        text = f"forgotten by the operator: {forgotten(node)}"
        deleted = DeleteNode(node.sn, node.vendor, node.model)
        return [deleted, Log("forgotten", logging.WARNING, text, node.sn, node.state)]

    def _schedule(self, node: Node, _step: Step) -> list[Action]:
        return [replies.pending_log(node, self._retry_in(node))]

    def _tell_cik(self, node: Node, step: Step) -> list[Action]:
        kinds = {Trigger.ISSUED: "activated", Trigger.ISSUED_ROTATED: "rotated"}
        kind = kinds.get(step.trigger, "republished")
        answer = replies.activated(node, step.cik)
        return [self._publish(answer), replies.credentials_log(node, kind)]

    def _tell_pending(self, node: Node, _step: Step) -> list[Action]:
        return [self._publish(replies.pending(node, self._retry_in(node)))]

    def _tell_rejected(self, node: Node, step: Step) -> list[Action]:
        # a rejection is logged when it is made, not each time it is repeated
        repeated = step.trigger is Trigger.ANNOUNCE
        log = [] if repeated else [replies.rejected_log(node)]
        return [self._publish(replies.rejected(node)), *log]

    def _tell_busy(self, node: Node, _step: Step) -> list[Action]:
        return [self._publish(replies.busy(node.sn, self._settings().max_pending))]

    def _tell_invalid(self, node: Node, step: Step) -> list[Action]:
        return invalid(node.sn, step.detail, step.response)

    def _warn_unasked(self, node: Node, step: Step) -> list[Action]:
        text = f"{step.trigger.value}: kept, and handed to nobody"
        return [Log("unexpected", logging.ERROR, text, node.sn, node.state)]

    def _check(self, node: Node, step: Step) -> list[Action]:
        assert step.cik is not None  # noqa: S101 (the lookup that found it carries it)
        owner = step.trigger in {Trigger.ANNOUNCE_ADOPT, Trigger.CHECK_OFFERED}
        return [CheckCik(node.sn, node.vendor, node.model, step.cik, owner)]

    def _retire(self, node: Node, step: Step) -> list[Action]:
        rotated = {Trigger.REENABLED, Trigger.REENABLED_STOPPING}
        if step.trigger in rotated:
            said, why = replies.rotation_log(node), "rotated away"
        else:
            adopted = step.trigger is Trigger.ADOPTED
            said = replies.refused_log(node, step.detail, adopted=adopted)
            why = "refused by Exosite" + ("; the node's own CIK adopted" if adopted else "")
        return [RetireCik(node.sn, node.vendor, node.model, why, step.retired), said]

    def _warn_no_verdict(self, node: Node, step: Step) -> list[Action]:
        return [replies.no_verdict_log(node, step.detail)]

    def _warn_rotation(self, node: Node, _step: Step) -> list[Action]:
        error = node.last_error or "rotation failed"
        return [Log("rotated", logging.ERROR, error, node.sn, node.state)]

    def _tell_checked(self, node: Node, step: Step) -> list[Action]:
        answer = dataclasses.replace(replies.activated(node, step.cik), checked=True)
        return [self._publish(answer), replies.checked_log(node)]

    def _tell_adopted(self, node: Node, step: Step) -> list[Action]:
        answer = dataclasses.replace(replies.activated(node, step.cik), adopted=True)
        return [self._publish(answer), replies.adopted_log(node)]

    def _warn_expiry(self, node: Node, _step: Step) -> list[Action]:
        hours = self._deadlines.waited(node.sn, self._clock()) / 3600
        return [replies.expiry_log(node, hours)]

    def _lookup_all(self, node: Node, step: Step) -> list[Action]:
        held = self._held(node, step)
        return [LookupCik(node.sn, held.vendor, held.model, retired_ciks=True)]

    def _keep_retired(self, node: Node, step: Step) -> list[Action]:
        importing = step.importing
        assert importing is not None  # noqa: S101 (the entry is under way)
        held, stored, cik = self._held(node, step), step.cik, importing.entry.cik  # the stored one
        replaces = stored is not None and cik is not None and stored != cik
        return [KeepRetired(node.sn, held.vendor, held.model, importing.entry.retired, replaces)]

    def _store_imported(self, node: Node, step: Step) -> list[Action]:
        importing = step.importing
        assert importing is not None  # noqa: S101 (the entry is under way)
        cik = importing.entry.cik
        if cik is None or cik == importing.stored:
            return []
        return [StoreCik(node.sn, node.vendor, node.model, cik)]

    def _tell_imported(self, node: Node, step: Step) -> list[Action]:
        importing = step.importing
        assert importing is not None  # noqa: S101 (the entry is under way)
        cik, stored = importing.entry.cik, importing.stored
        said = "imported from a bundle"
        if cik is not None and stored is not None and cik != stored:
            said += "; the CIK stored before is retired"
        elif cik is None:
            said += ", without a CIK"
        actions: list[Action] = [Log("imported", logging.INFO, said, node.sn, node.state)]
        waited = step.before is not None and step.before is not State.ACTIVATED
        if waited and cik is not None and node.state is State.ACTIVATED:
            actions.append(self._publish(replies.activated(node, cik)))
        return actions

    def _tell_operator(self, node: Node, step: Step) -> list[Action]:
        ok, answer = _IMPORT_ANSWERS[step.trigger]
        message = step.detail or f"{node.sn}: {_IMPORT_WORDS.get(answer, answer.value)}"
        return [imports.Decision(ok=ok, message=message, answer=answer)]

    def _held(self, node: Node, step: Step) -> Node:
        """The record held here for a bundle's entry's serial, else the entry's."""
        if self._book.get(node.sn) is not None or step.importing is None:
            return node
        return step.importing.entry.node

    def _publish(self, answer: Answer) -> Publish:
        return Publish(answer, self._book.responses(answer.sn))

    def _retry_in(self, node: Node) -> float:
        return self._deadlines.retry_in(node.sn, self._clock())


_EMITTERS: Final[Mapping[Effect, Emitter]] = {
    Effect.SAVE: Effects._save,  # noqa: SLF001 (the table of the class's own methods)
    Effect.REQUEST: Effects._request,  # noqa: SLF001
    Effect.LOOKUP: Effects._lookup,  # noqa: SLF001
    Effect.REENABLE: Effects._reenable,  # noqa: SLF001
    Effect.STORE: Effects._store,  # noqa: SLF001
    Effect.DELETE: Effects._delete,  # noqa: SLF001
    Effect.SCHEDULE: Effects._schedule,  # noqa: SLF001
    Effect.TELL_CIK: Effects._tell_cik,  # noqa: SLF001
    Effect.TELL_PENDING: Effects._tell_pending,  # noqa: SLF001
    Effect.TELL_REJECTED: Effects._tell_rejected,  # noqa: SLF001
    Effect.TELL_BUSY: Effects._tell_busy,  # noqa: SLF001
    Effect.TELL_INVALID: Effects._tell_invalid,  # noqa: SLF001
    Effect.WARN_UNASKED: Effects._warn_unasked,  # noqa: SLF001
    Effect.WARN_EXPIRY: Effects._warn_expiry,  # noqa: SLF001
    Effect.CHECK: Effects._check,  # noqa: SLF001
    Effect.RETIRE: Effects._retire,  # noqa: SLF001
    Effect.TELL_CHECKED: Effects._tell_checked,  # noqa: SLF001
    Effect.TELL_ADOPTED: Effects._tell_adopted,  # noqa: SLF001
    Effect.WARN_ROTATION: Effects._warn_rotation,  # noqa: SLF001
    Effect.WARN_NO_VERDICT: Effects._warn_no_verdict,  # noqa: SLF001
    Effect.LOOKUP_ALL: Effects._lookup_all,  # noqa: SLF001
    Effect.KEEP_RETIRED: Effects._keep_retired,  # noqa: SLF001
    Effect.STORE_IMPORTED: Effects._store_imported,  # noqa: SLF001
    Effect.TELL_IMPORTED: Effects._tell_imported,  # noqa: SLF001
    Effect.TELL_OPERATOR: Effects._tell_operator,  # noqa: SLF001
}

_IMPORT_ANSWERS: Final = {
    Trigger.IMPORT_REFUSED: (False, imports.Answer.REFUSED),
    Trigger.IMPORT_KEPT: (False, imports.Answer.KEPT),
    Trigger.IMPORT_UNKEPT: (False, imports.Answer.REFUSED),
    Trigger.IMPORT_LEFT: (True, imports.Answer.UNCHANGED),
    Trigger.IMPORT_TAKEN: (True, imports.Answer.IMPORTED),
}
"""How the operator's answer counts each way a bundle's entry ends."""
_IMPORT_WORDS: Final = {
    imports.Answer.UNCHANGED: imports.UNCHANGED,
    imports.Answer.IMPORTED: "imported",
}


def invalid(sn: str | None, message: str, response: ResponseTarget | None) -> list[Action]:
    """An announce that cannot be acted on: a warning, and the node told why."""
    actions: list[Action] = [
        Log("invalid_request", logging.WARNING, f"announce ignored: {message}", sn)
    ]
    if sn is not None:
        responses = (response,) if response is not None else ()
        actions.append(Publish(replies.invalid(sn, message), responses))
    return actions


def forgotten(node: Node) -> str:
    """What ``gatewayctl forget`` deleted of ``node``."""
    return "record and CIK deleted" if node.state is State.ACTIVATED else "record deleted"
