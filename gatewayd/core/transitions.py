"""The node state machine as data: every (state, trigger) pair gatewayd acts on.

For a node's state and a trigger (an event, sharpened by a guard such as "the
rejection is older than ``rejected_retry_after``" or "gatewayd is stopping"),
``TRANSITIONS`` gives a :class:`Row`: the next state, how the record changes,
whether the node's activation is now uncertain (Exosite may have issued a CIK
gatewayd does not hold), and the effects to emit, in order.
:mod:`gatewayd.core.engine` applies it; :mod:`gatewayd.core.records` makes each
change. A trigger without a row for the node's state changes nothing and is
logged as unexpected.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gatewayd.core.events import Failed, Issued, Outcome, Refused
from gatewayd.core.model import State


class Trigger(enum.Enum):
    ANNOUNCE = "announce"
    ANNOUNCE_LATE = "announce after rejected_retry_after"
    ANNOUNCE_BUSY = "announce of a new serial while max_pending nodes wait"
    ANNOUNCE_MODEL = "announce naming a model not in exosite.models"
    ANNOUNCE_REENABLING = "announce while gatewayd re-enables the serial"
    ISSUED = "200"
    MALFORMED = "2xx whose body is not a complete CIK"
    MALFORMED_AUTO = "a 2xx that is no CIK, with auto_reenable"
    ISSUED_UNASKED = "a 2xx with no request of it in flight"
    REFUSED = "refused"
    CONFLICT = "409"
    FAILED = "transient failure, the request never acted on"
    FAILED_MAYBE = "transient failure after which Exosite may have acted"
    CIK_FOUND = "CIK found"
    CIK_MISSING = "no CIK stored"
    LOOKUP_FAILED = "keyring unreadable"
    CIK_LOST = "409, no CIK stored, and our own request may have got it"
    CIK_LOST_AUTO = "the same, with auto_reenable"
    REENABLED = "re-enabled through the vendor API"
    REENABLE_FAILED = "the vendor API failed"
    UNSAVED = "the record ahead of a request cannot be saved"
    RESTARTED = "gatewayd starts; the record says a request was in flight"
    RESTARTED_REENABLING = "gatewayd starts while it re-enables the serial"
    STOPPING = "a request is due while gatewayd stops"
    REENABLED_STOPPING = "re-enabled while gatewayd stops"
    RETRY_DUE = "retry due"
    EXPIRY_DUE = "24 h since first seen, and not activated"
    REPUBLISH = "the operator asks to republish"
    RETRY = "the operator asks to retry now"
    FORGET = "the operator asks to forget the node"
    ANNOUNCE_CHECK = "announce saying Exosite refuses its CIK, a check due"
    CHECK_FOUND = "CIK found, to be checked with Exosite"
    CIK_ACCEPTED = "Exosite accepts the CIK"
    CIK_REFUSED = "Exosite refuses the CIK"
    CHECK_UNKNOWN = "no verdict on the CIK"
    CIK_REVOKED = "409 after the CIK was refused, none stored"
    CIK_REVOKED_AUTO = "409 after the CIK was refused, none stored, with auto_reenable"
    ANNOUNCE_ADOPT = "announce offering the node's CIK, none stored, a check due"
    ANNOUNCE_CHECKING = "announce while the CIK the node offered is checked"
    ADOPTED = "Exosite accepts the CIK the node offered"
    CHECK_OFFERED = "the stored CIK refused, the node's own to be checked"
    ROTATE = "the operator asks to rotate the CIK"
    RESTARTED_ROTATING = "gatewayd starts while it rotates the CIK"
    ISSUED_ROTATED = "200 for a rotation"
    REENABLE_MAYBE = "the vendor API failed, and a re-enable may have been carried out"
    REVOKED_FOUND = "a CIK found after Exosite refused the node's: checked before it is used"
    RETIRED_ONLY = "no CIK stored, one retired: Exosite refused it or it was rotated away"
    RETIRED_ONLY_AUTO = "no CIK stored, one retired, with auto_reenable"


class Change(enum.Enum):
    """How a node's record changes (:func:`gatewayd.core.records.change`)."""

    NEW = "a new record"
    MODEL = "the model the node names, if it names another"
    REQUEST = "the write-ahead of the request: when it started, in which form"
    REQUEST_AGAIN = "the same, the rejection cleared"
    ACTIVATED = "activated: the status, no error"
    BACKOFF = "one attempt more, the next one backed off"
    REFUSED = "Exosite's refusal: its reason and status"
    CIK_GONE = "rejected: the stored CIK is gone"
    LOST = "the issued CIK lost: needs re-enabling"
    NOT_A_CIK = "what was wrong with the 2xx body"
    REENABLE_FAILED = "why re-enabling failed"
    DUE_NOW = "the request put off, due at the next start"
    EXPIRY_WARNED = "warned of Exosite's expiry"
    REVOKED = "the CIK refused by Exosite"
    REVOKED_ACTIVE = "refused, and the device still activated: needs re-enabling"
    ADOPTED = "activated with the CIK its node offered"
    ROTATION = "a rotation: the activation to come replaces the CIK"
    ROTATION_FAILED = "the rotation failed: the CIK is unchanged"
    ROTATION_UNSURE = "the re-enable may have been carried out: asked again, backed off"


class Effect(enum.Enum):
    SAVE = "save the node's record"
    REQUEST = "send an activation request"
    STORE = "store the CIK (an unverified body apart)"
    LOOKUP = "read the stored CIK"
    REENABLE = "re-enable the serial through the vendor API"
    DELETE = "delete the record and the stored CIK"
    SCHEDULE = "schedule the next attempt"
    TELL_CIK = "publish the credentials"
    TELL_PENDING = "publish pending, with retry_in"
    TELL_REJECTED = "publish the recorded rejection"
    TELL_BUSY = "publish pending: come back later"
    TELL_INVALID = "publish invalid_request"
    WARN_UNASKED = "log an error: a 2xx nobody waited for"
    WARN_EXPIRY = "log a warning: Exosite expires the device soon"
    CHECK = "check the CIK with Exosite"
    RETIRE = "retire the stored CIK: kept apart, never handed out again"
    TELL_CHECKED = "publish the credentials, checked"
    TELL_ADOPTED = "publish the credentials, adopted"
    WARN_ROTATION = "log an error: the rotation failed"
    WARN_NO_VERDICT = "log a warning: no verdict on the CIK, nothing retired"


@dataclass(frozen=True, slots=True)
class Row:
    """What a trigger does to a node: ``target`` None means no record (none is made, or
    the one there was is deleted); ``uncertain`` True or False sets the flag, None keeps
    it."""

    target: State | None
    changes: tuple[Change, ...]
    effects: tuple[Effect, ...]
    uncertain: bool | None = None


_NEW: Final = None
"""The 'state' of a serial gatewayd has never seen (or has forgotten)."""

UNSETTLED: Final = frozenset({State.PENDING, State.REJECTED, State.NEEDS_REENABLE})
"""States in which a re-announce may change the model of the next request."""

S = State
ACTIVATING, RECOVERING, PENDING = S.ACTIVATING, S.RECOVERING, S.PENDING
ACTIVATED, REJECTED, REENABLE = S.ACTIVATED, S.REJECTED, S.NEEDS_REENABLE
ROTATING = S.ROTATING
T, C, E = Trigger, Change, Effect
SAVE, REQUEST, STORE, LOOKUP, SCHEDULE = E.SAVE, E.REQUEST, E.STORE, E.LOOKUP, E.SCHEDULE
TELL_CIK, TELL_PENDING, TELL_REJECTED = E.TELL_CIK, E.TELL_PENDING, E.TELL_REJECTED
SET, CLEAR, KEEP = True, False, None

_STATES: Final = (_NEW, ACTIVATING, RECOVERING, PENDING, ACTIVATED, REJECTED, REENABLE, ROTATING)
_NO_CIK: Final = (_NEW, REJECTED, REENABLE)
"""The states in which gatewayd holds no CIK for the node."""
_REVOKING: Final = (ACTIVATING, RECOVERING)
"""The states a node is in while it is activated again after Exosite refused its CIK."""
_WAITING: Final = (ACTIVATING, RECOVERING, PENDING, REJECTED, REENABLE)
"""The states a node may stay in until Exosite expires the device."""

# fmt: off
TRANSITIONS: Final[Mapping[tuple[State | None, Trigger], Row]] = {
    # state before   trigger               Row(state after, record changes, effects, uncertain)
    # -- announces: a record is written ahead of every request; never two requests at once
    (_NEW,       T.ANNOUNCE):          Row(ACTIVATING, (C.NEW, C.REQUEST), (SAVE, REQUEST)),
    (_NEW,       T.ANNOUNCE_BUSY):     Row(_NEW, (), (E.TELL_BUSY,)),
    (ACTIVATING, T.ANNOUNCE):          Row(ACTIVATING, (), ()),
    (RECOVERING, T.ANNOUNCE):          Row(RECOVERING, (), ()),
    (PENDING,    T.ANNOUNCE):          Row(PENDING, (C.MODEL,), (TELL_PENDING,)),
    (ACTIVATED,  T.ANNOUNCE):          Row(ACTIVATED, (), (LOOKUP,)),
    (REJECTED,   T.ANNOUNCE):          Row(REJECTED, (C.MODEL,), (TELL_REJECTED,)),
    (REJECTED,   T.ANNOUNCE_LATE):     Row(ACTIVATING, (C.MODEL, C.REQUEST_AGAIN), (SAVE, REQUEST)),
    (REENABLE,   T.ANNOUNCE):          Row(REENABLE, (C.MODEL,), (TELL_REJECTED,)),
    (REENABLE,   T.ANNOUNCE_REENABLING): Row(REENABLE, (C.MODEL,), (TELL_PENDING,)),
    (REENABLE,   T.ANNOUNCE_LATE):     Row(ACTIVATING, (C.MODEL, C.REQUEST_AGAIN), (SAVE, REQUEST)),
    **{(state,   T.ANNOUNCE_MODEL):    Row(state, (), (E.TELL_INVALID,)) for state in _STATES},
    # -- Exosite's answers: a CIK is stored before anything else happens
    (ACTIVATING, T.ISSUED):    Row(ACTIVATED, (C.ACTIVATED,), (STORE, SAVE, TELL_CIK), CLEAR),
    (ACTIVATING, T.MALFORMED):  Row(REENABLE, (C.NOT_A_CIK,), (STORE, SAVE, TELL_REJECTED), SET),
    (ACTIVATING, T.MALFORMED_AUTO): Row(REENABLE, (C.NOT_A_CIK,), (STORE, SAVE, E.REENABLE), SET),
    **{(state,   T.ISSUED_UNASKED):    Row(state, (), (STORE, E.WARN_UNASKED))
       for state in _STATES if state is not ACTIVATING},
    (ACTIVATING, T.REFUSED):           Row(REJECTED, (C.REFUSED,), (SAVE, TELL_REJECTED), CLEAR),
    (ACTIVATING, T.CONFLICT):          Row(ACTIVATING, (), (LOOKUP,)),
    (ACTIVATING, T.FAILED):    Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING)),
    (ACTIVATING, T.FAILED_MAYBE): Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING), SET),
    # -- the keystore's answers (after a 409, a re-announce, or a restart)
    (ACTIVATING, T.CIK_FOUND):         Row(ACTIVATED, (C.ACTIVATED,), (SAVE, TELL_CIK), CLEAR),
    (ACTIVATING, T.CIK_MISSING):       Row(REJECTED, (C.REFUSED,), (SAVE, TELL_REJECTED), CLEAR),
    (ACTIVATING, T.LOOKUP_FAILED): Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING)),
    (ACTIVATED,  T.CIK_FOUND):         Row(ACTIVATED, (), (TELL_CIK,)),
    (ACTIVATED,  T.CIK_MISSING):       Row(REJECTED, (C.CIK_GONE,), (SAVE, TELL_REJECTED), CLEAR),
    (ACTIVATED,  T.LOOKUP_FAILED):     Row(ACTIVATED, (), (TELL_PENDING,)),
    (RECOVERING, T.CIK_FOUND):         Row(ACTIVATED, (C.ACTIVATED,), (SAVE, TELL_CIK), CLEAR),
    (RECOVERING, T.CIK_MISSING):       Row(ACTIVATING, (C.REQUEST,), (SAVE, REQUEST)),
    (RECOVERING, T.LOOKUP_FAILED): Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING)),
    # -- a CIK lost between Exosite's 200 and the keyring: a person, or the vendor API
    (ACTIVATING, T.CIK_LOST):          Row(REENABLE, (C.LOST,), (SAVE, TELL_REJECTED)),
    (ACTIVATING, T.CIK_LOST_AUTO):     Row(REENABLE, (C.LOST,), (SAVE, E.REENABLE)),
    (REENABLE,   T.REENABLED):       Row(ACTIVATING, (C.REQUEST_AGAIN,), (SAVE, REQUEST), CLEAR),
    (REENABLE,   T.REENABLE_FAILED):
        Row(REENABLE, (C.REENABLE_FAILED,), (SAVE, TELL_REJECTED), CLEAR),
    # -- no request leaves before the record written ahead of it is on disk
    (ACTIVATING, T.UNSAVED):       Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING)),
    (REENABLE,   T.UNSAVED):       Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING)),
    # -- gatewayd starts and stops
    (ACTIVATING, T.RESTARTED):         Row(RECOVERING, (), (LOOKUP,), SET),
    (REENABLE,   T.RESTARTED_REENABLING): Row(REENABLE, (), (E.REENABLE,)),
    (_NEW,       T.STOPPING):          Row(PENDING, (C.NEW, C.DUE_NOW), (SAVE,)),
    (RECOVERING, T.STOPPING):          Row(PENDING, (C.DUE_NOW,), (SAVE,)),
    (PENDING,    T.STOPPING):          Row(PENDING, (), ()),
    (REJECTED,   T.STOPPING):          Row(PENDING, (C.MODEL, C.DUE_NOW), (SAVE,)),
    (REENABLE,   T.STOPPING):          Row(PENDING, (C.MODEL, C.DUE_NOW), (SAVE,)),
    (REENABLE,   T.REENABLED_STOPPING): Row(PENDING, (C.DUE_NOW,), (SAVE,), CLEAR),
    # -- timers
    (PENDING,    T.RETRY_DUE):         Row(ACTIVATING, (C.REQUEST,), (SAVE, REQUEST)),
    **{(state,   T.EXPIRY_DUE):        Row(state, (C.EXPIRY_WARNED,), (SAVE, E.WARN_EXPIRY))
       for state in _WAITING},
    # -- a node says Exosite refuses its CIK: checked, at most once per check_interval
    (ACTIVATED,  T.ANNOUNCE_CHECK):    Row(ACTIVATED, (), (LOOKUP,)),
    (ACTIVATED,  T.CHECK_FOUND):       Row(ACTIVATED, (), (E.CHECK,)),
    (ACTIVATED,  T.CIK_ACCEPTED):      Row(ACTIVATED, (), (E.TELL_CHECKED,)),
    (ACTIVATED,  T.CHECK_UNKNOWN):     Row(ACTIVATED, (), (E.WARN_NO_VERDICT, TELL_CIK)),
    (ACTIVATED,  T.CIK_REFUSED): Row(ACTIVATING, (C.REVOKED, C.REQUEST), (SAVE, E.RETIRE, REQUEST)),
    (ACTIVATED,  T.CHECK_OFFERED):     Row(ACTIVATED, (), (E.CHECK,)),
    (ACTIVATED,  T.ADOPTED):
        Row(ACTIVATED, (C.ADOPTED,), (STORE, SAVE, E.RETIRE, E.TELL_ADOPTED), CLEAR),
    (ACTIVATED,  T.STOPPING):          Row(PENDING, (C.REVOKED, C.DUE_NOW), (SAVE, E.RETIRE)),
    (ACTIVATING, T.CIK_REVOKED):       Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, TELL_REJECTED)),
    (ACTIVATING, T.CIK_REVOKED_AUTO):  Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, E.REENABLE), SET),
    # -- the record says the CIK was refused, written before the CIK is retired: a CIK found
    #    then (a stop in between, or the one issued since) is checked again before it is used
    **{(state,   T.REVOKED_FOUND):     Row(state, (), (E.CHECK,)) for state in _REVOKING},
    **{(state,   T.CIK_ACCEPTED):      Row(ACTIVATED, (C.ACTIVATED,), (SAVE, TELL_CIK), CLEAR)
       for state in _REVOKING},
    **{(state,   T.CIK_REFUSED):
        Row(ACTIVATING, (C.REVOKED, C.REQUEST), (SAVE, E.RETIRE, REQUEST)) for state in _REVOKING},
    **{(state,   T.CHECK_UNKNOWN):  Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING))
       for state in _REVOKING},
    (ACTIVATING, T.STOPPING):          Row(PENDING, (C.DUE_NOW,), (SAVE,)),
    # -- an activated record whose CIK was retired, none stored (a stop between the two)
    (ACTIVATED,  T.RETIRED_ONLY):      Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, TELL_REJECTED)),
    (ACTIVATED,  T.RETIRED_ONLY_AUTO): Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, E.REENABLE), SET),
    # -- a node offers its CIK where none is stored: checked, and adopted if accepted
    **{(state,   T.ANNOUNCE_ADOPT):    Row(state, (), (E.CHECK,)) for state in _NO_CIK},
    **{(state,   T.ANNOUNCE_CHECKING): Row(state, (), ()) for state in _NO_CIK},
    **{(state,   T.ADOPTED): Row(ACTIVATED, (C.MODEL, C.ADOPTED), (STORE, SAVE, E.TELL_ADOPTED),
                                 CLEAR) for state in _NO_CIK},
    # -- the operator rotates a CIK: re-enable, retire the old, activate, store, publish
    (ACTIVATED,  T.ROTATE):            Row(ROTATING, (C.ROTATION,), (SAVE, E.REENABLE)),
    (ROTATING,   T.RESTARTED_ROTATING): Row(ROTATING, (), (E.REENABLE,), SET),
    (ROTATING,   T.ANNOUNCE):          Row(ROTATING, (), (TELL_PENDING,)),
    (ROTATING,   T.REENABLED):      Row(ACTIVATING, (C.REQUEST,), (E.RETIRE, SAVE, REQUEST), CLEAR),
    (ROTATING,   T.REENABLED_STOPPING): Row(PENDING, (C.DUE_NOW,), (E.RETIRE, SAVE), CLEAR),
    (ROTATING,   T.REENABLE_FAILED):
        Row(ACTIVATED, (C.ROTATION_FAILED,), (SAVE, E.WARN_ROTATION), CLEAR),
    # -- a re-enable that may have been carried out (this one, or one before a restart): the
    #    old CIK may be dead, so it is never gone back to; the re-enable is asked for again,
    #    backed off, until the vendor API carries it out (not while gatewayd stops)
    (ROTATING,   T.REENABLE_MAYBE):
        Row(ROTATING, (C.ROTATION_UNSURE,), (SCHEDULE, SAVE, E.WARN_ROTATION), SET),
    (ROTATING,   T.RETRY_DUE):         Row(ROTATING, (), (E.REENABLE,)),
    (ROTATING,   T.STOPPING):          Row(ROTATING, (), ()),
    (ACTIVATING, T.ISSUED_ROTATED): Row(ACTIVATED, (C.ACTIVATED,), (STORE, SAVE, TELL_CIK), CLEAR),
    # -- the operator (gatewayctl republish, retry, forget)
    (ACTIVATED,  T.REPUBLISH):         Row(ACTIVATED, (), (LOOKUP,)),
    (PENDING,    T.RETRY):             Row(ACTIVATING, (C.REQUEST,), (SAVE, REQUEST)),
    (REJECTED,   T.RETRY):             Row(ACTIVATING, (C.REQUEST_AGAIN,), (SAVE, REQUEST)),
    (REENABLE,   T.RETRY):             Row(ACTIVATING, (C.REQUEST_AGAIN,), (SAVE, REQUEST)),
    **{(state,   T.FORGET):            Row(_NEW, (), (E.DELETE,))
       for state in (PENDING, ACTIVATED, REJECTED, REENABLE)},
}
# fmt: on


def stopping(trigger: Trigger) -> Trigger:
    """What ``trigger`` becomes while gatewayd stops, if its row would send a request (or
    is a retry of a rotation's re-enable)."""
    return Trigger.REENABLED_STOPPING if trigger is Trigger.REENABLED else Trigger.STOPPING


def trigger_of(outcome: Outcome, *, auto_reenable: bool) -> Trigger:
    """The trigger of Exosite's answer to a request in flight."""
    match outcome:
        case Issued(problem=None):
            return Trigger.ISSUED
        case Issued():
            return Trigger.MALFORMED_AUTO if auto_reenable else Trigger.MALFORMED
        case Refused(http_status=409):
            return Trigger.CONFLICT
        case Refused():
            return Trigger.REFUSED
        case Failed(maybe_delivered=True):
            return Trigger.FAILED_MAYBE
        case Failed():
            return Trigger.FAILED


def as_table() -> str:
    """``TRANSITIONS`` as a Markdown table, for the README
    (``python -m gatewayd.core.transitions``)."""
    lines = [
        "| state | trigger | next state | record | uncertain | what gatewayd does, in order |",
        "|---|---|---|---|---|---|",
    ]
    flag = {True: "set", False: "cleared", None: ""}
    for (state, trigger), row in TRANSITIONS.items():
        before = "(none)" if state is None else f"`{state}`"
        after = "(none)" if row.target is None else f"`{row.target}`"
        changed = "; ".join(change.value for change in row.changes)
        done = "; ".join(effect.value for effect in row.effects) or "nothing"
        lines.append(
            f"| {before} | {trigger.value} | {after} | {changed} | {flag[row.uncertain]} | {done} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(as_table(), end="")
