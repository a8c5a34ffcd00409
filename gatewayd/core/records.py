"""How a node's record, and its work, change when a row of ``TRANSITIONS`` is applied.

Each :class:`~gatewayd.core.transitions.Change` a row names is one function
here, filling in the fields that go with it: timestamps, attempts and the next
attempt, the reason of a rejection, the write-ahead of each request; or, for
the node's :class:`~gatewayd.core.transitions.Work`, the check it starts.
:func:`apply` makes the row's changes to the record, sets its state, and sets or
clears ``uncertain`` as the row says: the one place the flag is written.
:func:`work_after` makes its changes to the work. Pure functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action, StoreCik
from gatewayd.core.events import Announced, Failed, Issued, Outcome, Refused
from gatewayd.core.model import Node, Reason, ResponseTarget, Settings, State
from gatewayd.core.secret import Secret
from gatewayd.core.timers import backoff_ceiling
from gatewayd.core.transitions import (
    ANY,
    TAKEN,
    Change,
    Check,
    Effect,
    Importing,
    Row,
    Trigger,
    Work,
)

REFUSALS: Final[Mapping[int, Reason]] = {
    404: Reason.UNKNOWN_SERIAL,
    403: Reason.INVALID_VENDOR_MODEL,
    409: Reason.NOT_ACTIVATABLE,
}
"""Exosite's refusals by status; any other 4xx (but 429) is ``api_error``."""


@dataclass(frozen=True, slots=True)
class Step:
    """One row being applied to serial ``sn``: what caused it, and what came with it."""

    sn: str
    trigger: Trigger
    now: float
    cik: Secret | None = None
    outcome: Outcome | None = None
    model: str | None = None
    """The model the announce named, if any."""
    response: ResponseTarget | None = None
    detail: str = ""
    retired: Secret | None = None
    """A CIK to retire once the one that replaces it is stored (or, a check starting on
    the node's own CIK, the stored one Exosite refused)."""
    announce: Announced | None = None
    """The announce that fired the row, if one did."""
    clock: float = 0.0
    """The monotonic clock: when a check starts, for ``check_interval``."""
    importing: Importing | None = None
    """A bundle's entry under way."""
    before: State | None = None
    """The node's state the row is applied in (None: no record)."""


Fields = dict[str, object]


def apply(
    node: Node,
    row: Row,
    step: Step,
    settings: Settings,
    uniform: Callable[[float, float], float],
) -> Node:
    """``node``'s record after ``row`` (whose target is a state, the same state, or the
    record a bundle's entry brings)."""
    assert row.target is not None  # noqa: S101 (a row without a record makes none)
    if row.target is TAKEN:
        assert step.importing is not None  # noqa: S101 (the entry is under way)
        return step.importing.entry.node
    fields: Fields = {}
    for change in row.changes:
        made = _CHANGES.get(change)
        if made is not None:
            current = dataclasses.replace(node, **fields) if fields else node  # type: ignore[arg-type]
            fields |= made(current, step, settings, uniform)
    if row.target is not ANY:
        fields["state"] = row.target
    if row.uncertain is not None:
        fields["uncertain"] = row.uncertain
    return dataclasses.replace(node, **fields)  # type: ignore[arg-type]


def new(sn: str, step: Step, settings: Settings) -> Node:
    """The record of a serial gatewayd has not seen before."""
    model = step.model or settings.model
    return Node(sn, settings.vendor, model, State.ACTIVATING, step.now)


Maker = Callable[[Node, Step, Settings, Callable[[float, float], float]], Fields]


def _none(_node: Node, _step: Step, _settings: Settings, _uniform: object) -> Fields:
    return {}


def _model(node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    return {} if step.model is None or step.model == node.model else {"model": step.model}


def _request(_node: Node, step: Step, settings: Settings, _uniform: object) -> Fields:
    return {"request_started": step.now, "request_form": settings.api}


def _unrejected() -> Fields:
    return {"reason": None, "rejected_at": None, "attempts": 0}


def _request_again(node: Node, step: Step, settings: Settings, uniform: object) -> Fields:
    return _request(node, step, settings, uniform) | _unrejected()


def _due_now(node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    rejection = _unrejected() if node.rejected_at is not None else {}
    return {"next_attempt": step.now} | rejection


def _activated(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    fields: Fields = {"activated_at": step.now, "next_attempt": None, "reason": None}
    status = 200 if isinstance(step.outcome, Issued) else 409
    return fields | {"last_error": None, "http_status": status}


def _backoff(
    node: Node, step: Step, settings: Settings, uniform: Callable[[float, float], float]
) -> Fields:
    outcome = step.outcome
    assert isinstance(outcome, Failed)  # noqa: S101 (every backoff row carries the failure)
    attempts = node.attempts + 1
    ceiling = backoff_ceiling(
        attempts, settings.backoff_base, settings.backoff_factor, settings.backoff_cap
    )
    return {
        "attempts": attempts,
        "next_attempt": step.now + uniform(0.0, ceiling),
        "last_error": outcome.error,
        "http_status": outcome.http_status,
    }


def _rejected(step: Step) -> Fields:
    fields: Fields = {"rejected_at": step.now, "next_attempt": None}
    return fields


def _refused(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    status = step.outcome.http_status if isinstance(step.outcome, Refused) else 409
    reason = REFUSALS.get(status, Reason.API_ERROR)
    text = replies.rejection(reason, status)
    return {"reason": reason, "last_error": text, "http_status": status} | _rejected(step)


def _cik_gone(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    fields: Fields = {"reason": Reason.NOT_ACTIVATABLE, "last_error": replies.CIK_MISSING}
    return fields | {"http_status": None} | _rejected(step)


def _lost(node: Node, step: Step, settings: Settings, _uniform: object) -> Fields:
    text = replies.CIK_LOST_AUTO if settings.auto_reenable else replies.cik_lost(node.sn)
    fields: Fields = {"reason": Reason.NOT_ACTIVATABLE, "last_error": text, "http_status": 409}
    return fields | _rejected(step)


def _not_a_cik(node: Node, step: Step, settings: Settings, _uniform: object) -> Fields:
    problem = step.outcome.problem if isinstance(step.outcome, Issued) else None
    text = replies.not_a_cik(node.sn, problem or "", auto=settings.auto_reenable)
    fields: Fields = {"reason": Reason.NOT_ACTIVATABLE, "last_error": text, "http_status": 200}
    return fields | _rejected(step)


def _reenable_failed(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    error = step.outcome.error if isinstance(step.outcome, Failed) else "unknown"
    return {"last_error": f"re-enabling failed ({error}); {replies.REENABLE_BY_HAND}"}


def _revoked(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    text = f"Exosite refuses the CIK ({step.detail}): retired, activating again"
    return {"reason": Reason.CIK_REVOKED, "last_error": text, "http_status": None}


def _revoked_active(node: Node, step: Step, settings: Settings, _uniform: object) -> Fields:
    text = replies.revoked(node.sn, auto=settings.auto_reenable)
    fields: Fields = {"reason": Reason.CIK_REVOKED, "last_error": text, "http_status": 409}
    return fields | _rejected(step)


def _adopted(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    fields: Fields = {"activated_at": step.now, "next_attempt": None, "last_error": None}
    return fields | {"http_status": None} | _unrejected()


def _rotation(_node: Node, _step: Step, _settings: Settings, _uniform: object) -> Fields:
    return {"reason": Reason.ROTATION, "last_error": None}


def _rotation_unsure(
    node: Node, step: Step, settings: Settings, uniform: Callable[[float, float], float]
) -> Fields:
    error = step.outcome.error if isinstance(step.outcome, Failed) else "unknown"
    return _backoff(node, step, settings, uniform) | {"last_error": replies.rotation_unsure(error)}


def _rotation_failed(_node: Node, step: Step, _settings: Settings, _uniform: object) -> Fields:
    error = step.outcome.error if isinstance(step.outcome, Failed) else "unknown"
    return {"reason": None, "last_error": replies.rotation_failed(error)}


def _expiry_warned(_node: Node, _step: Step, _settings: Settings, _uniform: object) -> Fields:
    return {"expiry_warned": True}


_CHANGES: Final[Mapping[Change, Maker]] = {
    Change.NEW: _none,
    Change.MODEL: _model,
    Change.REQUEST: _request,
    Change.REQUEST_AGAIN: _request_again,
    Change.DUE_NOW: _due_now,
    Change.ACTIVATED: _activated,
    Change.BACKOFF: _backoff,
    Change.REFUSED: _refused,
    Change.CIK_GONE: _cik_gone,
    Change.LOST: _lost,
    Change.NOT_A_CIK: _not_a_cik,
    Change.REENABLE_FAILED: _reenable_failed,
    Change.EXPIRY_WARNED: _expiry_warned,
    Change.REVOKED: _revoked,
    Change.REVOKED_ACTIVE: _revoked_active,
    Change.ADOPTED: _adopted,
    Change.ROTATION: _rotation,
    Change.ROTATION_FAILED: _rotation_failed,
    Change.ROTATION_UNSURE: _rotation_unsure,
}


def store(node: Node, step: Step) -> list[Action]:
    """The actions that keep an issued body: the store, and an error if it is no CIK (or
    came with no request of it in flight: it is kept apart then)."""
    assert step.cik is not None  # noqa: S101 (an answer that stores always carries the body)
    outcome = step.outcome
    problem = outcome.problem if isinstance(outcome, Issued) else None
    if problem is not None:
        action = StoreCik(node.sn, node.vendor, node.model, step.cik, unverified=True)
        return [action, replies.malformed_log(node, problem)]
    return [StoreCik(node.sn, node.vendor, node.model, step.cik)]


def work_after(work: Work, row: Row, step: Step) -> Work:
    """The node's work after ``row``: the checks it starts, a republish waited for, and a
    re-enable under way when it sends one (until its answer: see ``settle``)."""
    for change in row.changes:
        made = _WORK.get(change)
        if made is not None:
            work = made(work, step)
    if Effect.REENABLE in row.effects and not work.reenabling:
        work = dataclasses.replace(work, reenabling=True)
    return work


def _checking(work: Work, check: Check | None, marked: Secret | None, step: Step) -> Work:
    """``work`` with ``check`` under way, and ``marked`` (None: the stored CIK) checked now."""
    checked = tuple(kept for kept in work.checked if kept[0] != marked)
    return dataclasses.replace(work, check=check, checked=(*checked, (marked, step.clock)))


def _check_stored(work: Work, step: Step) -> Work:
    rejected = step.announce is not None and step.announce.cik_rejected
    return _checking(work, Check(offered=step.cik, rejected=rejected), None, step)


def _check_offer(work: Work, step: Step) -> Work:
    return _checking(work, Check(offer=step.announce, cik=step.cik), step.cik, step)


def _check_sent(work: Work, step: Step) -> Work:
    check = work.check or Check()
    return dataclasses.replace(work, check=dataclasses.replace(check, cik=step.cik))


def _check_next(work: Work, step: Step) -> Work:
    check = Check(refusal=step.detail, cik=step.cik, refused=step.retired)
    return _checking(work, check, step.cik, step)


def _check_again(work: Work, step: Step) -> Work:
    return dataclasses.replace(work, check=Check(cik=step.cik))


def _check_dropped(work: Work, _step: Step) -> Work:
    checked = tuple(kept for kept in work.checked if kept[0] is not None)
    return dataclasses.replace(work, check=None, checked=checked)


def _republish(work: Work, _step: Step) -> Work:
    return dataclasses.replace(work, republish=True)


def _import(work: Work, step: Step) -> Work:
    return dataclasses.replace(work, importing=step.importing)


def _import_found(work: Work, step: Step) -> Work:
    importing = work.importing
    assert importing is not None  # noqa: S101 (the entry is under way)
    take = step.trigger is Trigger.IMPORT_TAKE
    found = dataclasses.replace(importing, decided=True, stored=step.cik, take=take)
    return dataclasses.replace(work, importing=found)


def _import_over(work: Work, _step: Step) -> Work:
    return dataclasses.replace(work, importing=None)


_WORK: Final[Mapping[Change, Callable[[Work, Step], Work]]] = {
    Change.CHECK_STORED: _check_stored,
    Change.CHECK_OFFER: _check_offer,
    Change.CHECK_SENT: _check_sent,
    Change.CHECK_NEXT: _check_next,
    Change.CHECK_AGAIN: _check_again,
    Change.CHECK_DROPPED: _check_dropped,
    Change.REPUBLISH: _republish,
    Change.IMPORT: _import,
    Change.IMPORT_FOUND: _import_found,
    Change.IMPORT_OVER: _import_over,
}
