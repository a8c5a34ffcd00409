"""The node state machine as data: every (state, trigger) pair gatewayd acts on.

For a node's state and a trigger (an event, sharpened by a guard such as "the
rejection is older than ``rejected_retry_after``"), ``TRANSITIONS`` gives the
next state and the effects to emit, in order. ``gatewayd.core.engine`` applies it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from gatewayd.core.events import Failed, Issued, Node, Outcome, Refused, State


class Trigger(enum.Enum):
    ANNOUNCE = "announce"
    ANNOUNCE_LATE = "announce after rejected_retry_after"
    ISSUED = "200"
    MALFORMED = "2xx whose body is not a complete CIK"
    MALFORMED_AUTO = "a 2xx that is no CIK, with auto_reenable"
    REFUSED = "refused"
    CONFLICT = "409"
    FAILED = "transient failure"
    CIK_FOUND = "CIK found"
    CIK_MISSING = "no CIK stored"
    LOOKUP_FAILED = "keyring unreadable"
    CIK_LOST = "409, no CIK stored, and our own request may have got it"
    CIK_LOST_AUTO = "the same, with auto_reenable"
    ANNOUNCE_REENABLING = "announce while gatewayd re-enables the serial"
    REENABLED = "re-enabled through the vendor API"
    REENABLE_FAILED = "the vendor API failed"
    UNSAVED = "the record ahead of a request cannot be saved"
    RETRY_DUE = "retry due"
    REPUBLISH = "the operator asks to republish"
    RETRY = "the operator asks to retry now"


class Effect(enum.Enum):
    SAVE = "save the node's record"
    REQUEST = "send an activation request"
    STORE = "store the CIK (an unverified body apart)"
    LOOKUP = "read the stored CIK"
    REENABLE = "re-enable the serial through the vendor API"
    SCHEDULE = "schedule the next attempt"
    TELL_CIK = "publish the credentials"
    TELL_PENDING = "publish pending, with retry_in"
    TELL_REJECTED = "publish the recorded rejection"
    WAIT = "nothing yet: an answer is on its way"


_NEW: Final = None
"""The 'state' of a serial gatewayd has never seen."""

UNSETTLED: Final = frozenset({State.PENDING, State.REJECTED, State.NEEDS_REENABLE})
"""States in which a re-announce may change the model of the next request."""

SAVE, REQUEST, STORE, LOOKUP = Effect.SAVE, Effect.REQUEST, Effect.STORE, Effect.LOOKUP
REENABLE = Effect.REENABLE
SCHEDULE, WAIT = Effect.SCHEDULE, Effect.WAIT
TELL_CIK, TELL_PENDING, TELL_REJECTED = Effect.TELL_CIK, Effect.TELL_PENDING, Effect.TELL_REJECTED

# fmt: off
TRANSITIONS: Final[Mapping[tuple[State | None, Trigger], tuple[State, tuple[Effect, ...]]]] = {
    # state before     trigger                    state after        effects, in order
    # -- announces: a record is written ahead of every request; never two requests at once
    (_NEW,             Trigger.ANNOUNCE):       (State.ACTIVATING, (SAVE, REQUEST)),
    (State.ACTIVATING, Trigger.ANNOUNCE):       (State.ACTIVATING, (WAIT,)),
    (State.RECOVERING, Trigger.ANNOUNCE):       (State.RECOVERING, (WAIT,)),
    (State.PENDING,    Trigger.ANNOUNCE):       (State.PENDING,    (TELL_PENDING,)),
    (State.ACTIVATED,  Trigger.ANNOUNCE):       (State.ACTIVATED,  (LOOKUP,)),
    (State.REJECTED,   Trigger.ANNOUNCE):       (State.REJECTED,   (TELL_REJECTED,)),
    (State.REJECTED,   Trigger.ANNOUNCE_LATE):  (State.ACTIVATING, (SAVE, REQUEST)),
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE):   (State.NEEDS_REENABLE, (TELL_REJECTED,)),
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE_REENABLING): (State.NEEDS_REENABLE, (TELL_PENDING,)),
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE_LATE): (State.ACTIVATING, (SAVE, REQUEST)),
    # -- Exosite's answers: a CIK is stored before anything else happens
    (State.ACTIVATING, Trigger.ISSUED):         (State.ACTIVATED,  (STORE, SAVE, TELL_CIK)),
    (State.ACTIVATING, Trigger.MALFORMED): (State.NEEDS_REENABLE, (STORE, SAVE, TELL_REJECTED)),
    (State.ACTIVATING, Trigger.MALFORMED_AUTO): (State.NEEDS_REENABLE, (STORE, SAVE, REENABLE)),
    (State.ACTIVATING, Trigger.REFUSED):        (State.REJECTED,   (SAVE, TELL_REJECTED)),
    (State.ACTIVATING, Trigger.CONFLICT):       (State.ACTIVATING, (LOOKUP,)),
    (State.ACTIVATING, Trigger.FAILED):         (State.PENDING,    (SCHEDULE, SAVE, TELL_PENDING)),
    # -- the keystore's answers (after a 409, a re-announce, or a restart)
    (State.ACTIVATING, Trigger.CIK_FOUND):      (State.ACTIVATED,  (SAVE, TELL_CIK)),
    (State.ACTIVATING, Trigger.CIK_MISSING):    (State.REJECTED,   (SAVE, TELL_REJECTED)),
    (State.ACTIVATING, Trigger.LOOKUP_FAILED):  (State.PENDING,    (SCHEDULE, SAVE, TELL_PENDING)),
    (State.ACTIVATED,  Trigger.CIK_FOUND):      (State.ACTIVATED,  (TELL_CIK,)),
    (State.ACTIVATED,  Trigger.CIK_MISSING):    (State.REJECTED,   (SAVE, TELL_REJECTED)),
    (State.ACTIVATED,  Trigger.LOOKUP_FAILED):  (State.ACTIVATED,  (TELL_PENDING,)),
    (State.RECOVERING, Trigger.CIK_FOUND):      (State.ACTIVATED,  (SAVE, TELL_CIK)),
    (State.RECOVERING, Trigger.CIK_MISSING):    (State.ACTIVATING, (SAVE, REQUEST)),
    (State.RECOVERING, Trigger.LOOKUP_FAILED):  (State.PENDING,    (SCHEDULE, SAVE, TELL_PENDING)),
    # -- a CIK lost between Exosite's 200 and the keyring: a person, or the vendor API
    (State.ACTIVATING, Trigger.CIK_LOST):       (State.NEEDS_REENABLE, (SAVE, TELL_REJECTED)),
    (State.ACTIVATING, Trigger.CIK_LOST_AUTO):  (State.NEEDS_REENABLE, (SAVE, REENABLE)),
    (State.NEEDS_REENABLE, Trigger.REENABLED):  (State.ACTIVATING, (SAVE, REQUEST)),
    (State.NEEDS_REENABLE, Trigger.REENABLE_FAILED): (State.NEEDS_REENABLE, (SAVE, TELL_REJECTED)),
    # -- no request leaves before the record written ahead of it is on disk
    (State.ACTIVATING, Trigger.UNSAVED):        (State.PENDING,    (SCHEDULE, SAVE, TELL_PENDING)),
    (State.NEEDS_REENABLE, Trigger.UNSAVED):    (State.PENDING,    (SCHEDULE, SAVE, TELL_PENDING)),
    # -- timers
    (State.PENDING,    Trigger.RETRY_DUE):      (State.ACTIVATING, (SAVE, REQUEST)),
    # -- the operator (gatewayctl republish, gatewayctl retry)
    (State.ACTIVATED,  Trigger.REPUBLISH):      (State.ACTIVATED,  (LOOKUP,)),
    (State.PENDING,    Trigger.RETRY):          (State.ACTIVATING, (SAVE, REQUEST)),
    (State.REJECTED,   Trigger.RETRY):          (State.ACTIVATING, (SAVE, REQUEST)),
    (State.NEEDS_REENABLE, Trigger.RETRY):      (State.ACTIVATING, (SAVE, REQUEST)),
}
# fmt: on


def refused(node: Node, trigger: Trigger) -> str | None:
    """Why an operator's command cannot act on ``node`` now, or None if it can."""
    if (node.state, trigger) in TRANSITIONS:
        return None
    if trigger is Trigger.REPUBLISH:
        return f"not activated (it is {node.state}): there are no credentials to republish"
    if node.state is State.ACTIVATED:
        return "already activated: Exosite would refuse another activation"
    return f"a request about it is in flight (it is {node.state})"


def trigger_of(outcome: Outcome) -> Trigger:
    match outcome:
        case Issued():
            return Trigger.ISSUED
        case Refused(http_status=409):
            return Trigger.CONFLICT
        case Refused():
            return Trigger.REFUSED
        case Failed():
            return Trigger.FAILED


def as_table() -> str:
    """``TRANSITIONS`` as a Markdown table, for the README
    (``python -m gatewayd.core.transitions``)."""
    lines = [
        "| state | trigger | next state | what gatewayd does, in order |",
        "|---|---|---|---|",
    ]
    for (state, trigger), (target, effects) in TRANSITIONS.items():
        before = "(new)" if state is None else f"`{state}`"
        done = "; ".join(effect.value for effect in effects)
        lines.append(f"| {before} | {trigger.value} | `{target}` | {done} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(as_table(), end="")
