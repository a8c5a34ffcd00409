"""The node state machine, whole: every (state, trigger) pair gatewayd acts on, and the
rules that pick the trigger, side by side.

A node's state is its record's ``state`` and, held in memory only, its
:class:`Work`: what gatewayd has under way about it that the record does not say
(a check of a CIK with Exosite, a re-enable sent, a republish the operator waits
for). An event becomes a trigger by one of the rules below the table
(:func:`announced`, :func:`answered`, :func:`looked_up`, :func:`verdict`,
:func:`reenable_answered`, :func:`unfinished`), each reading the node's
:class:`Facts` only; ``TRANSITIONS`` then gives the :class:`Row` for the node's
state and that trigger: the next state, how the record and the work change,
whether the node's activation is now uncertain (Exosite may have issued a CIK
gatewayd does not hold), and the effects, in order. While gatewayd stops, a row
that would send a request gives way to the trigger's stopping row
(:func:`row_for`). An operator's command with no row for the node's state is
refused, saying why (:func:`refusal`). A trigger without a row otherwise changes
nothing and is logged as unexpected.

:mod:`gatewayd.core.engine` applies the rows; :mod:`gatewayd.core.records` makes
each change of a record, :func:`work_after` each change of the work;
:mod:`gatewayd.core.effects` turns effects into actions. ``gatewayd/core/README.md``
walks through one question with this module alone.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gatewayd.core import imports
from gatewayd.core.events import (
    ActivationAnswered,
    Announced,
    CikChecked,
    CikLookedUp,
    Event,
    Failed,
    Forget,
    Imported,
    Issued,
    Outcome,
    ReenableAnswered,
    Refused,
    RequestUnsent,
    RetiredKept,
    Retry,
    Rotate,
    Verdict,
)
from gatewayd.core.model import Node, Reason, Settings, State
from gatewayd.core.secret import Secret


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
    OFFERED_STORED = "the CIK the node offers is the one stored, and not said refused"
    IMPORT = "a bundle's entry: the stored CIK and those retired are read first"
    IMPORT_REFUSED = "the entry refused: its CIK retired here, the node busy, or no keyring"
    IMPORT_KEPT = "the entry is not taken over what is held here"
    IMPORT_UNCHANGED = "the entry is held here already"
    IMPORT_TAKE = "the entry is to be taken"
    IMPORT_LEFT = "the bundle's retired CIKs kept: the entry left as it is held"
    IMPORT_TAKEN = (
        "the bundle's retired CIKs kept, the CIK it replaces retired: the entry taken (then "
        "finished as at a start, unless gatewayd stops)"
    )
    IMPORT_UNKEPT = "the keystore cannot keep the retired CIKs, or retire the CIK replaced"


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
    # what is under way about the node (its Work, in memory only): see work_after
    CHECK_STORED = "a check of the stored CIK starts (with what the node said and offered)"
    CHECK_OFFER = "a check of the CIK the node offers starts"
    CHECK_SENT = "the stored CIK goes to Exosite"
    CHECK_NEXT = "the stored CIK refused: the offered one is checked next"
    CHECK_AGAIN = "a check of the CIK found starts, whatever the limits"
    CHECK_DROPPED = "nothing to check after all (not counted as checked)"
    REPUBLISH = "the operator waits for the republish's outcome"
    IMPORT = "the entry waits for the keystore's answer"
    IMPORT_FOUND = "what the keystore holds is kept with the entry"
    IMPORT_OVER = "the entry is answered"


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
    LOOKUP_ALL = "read the stored CIK and those retired"
    KEEP_RETIRED = "keep the bundle's retired CIKs, and retire the CIK the entry replaces"
    STORE_IMPORTED = "store the bundle's CIK, unless it is stored already"
    TELL_IMPORTED = "log the import; publish the credentials to a node that waited for them"
    TELL_OPERATOR = "tell the operator what became of the entry"


class Special(enum.Enum):
    """Rows that stand for more than one state, or lead to a state a row cannot name."""

    ANY = "(any)"
    """The row of a trigger for every state (none of its own)."""
    TAKEN = "(the bundle's)"
    """The record a bundle's entry brings, taken as it stands."""


ANY: Final = Special.ANY
TAKEN: Final = Special.TAKEN


@dataclass(frozen=True, slots=True)
class Row:
    """What a trigger does to a node: ``target`` None means no record (none is made, or
    the one there was is deleted); ``uncertain`` True or False sets the flag, None keeps
    it."""

    target: State | Special | None
    changes: tuple[Change, ...]
    effects: tuple[Effect, ...]
    uncertain: bool | None = None


# ------------------------------------------------------------------ groups of states

S = State
_NEW: Final = None
"""The 'state' of a serial gatewayd has never seen (or has forgotten)."""
ACTIVATING, RECOVERING, PENDING = S.ACTIVATING, S.RECOVERING, S.PENDING
ACTIVATED, REJECTED, REENABLE = S.ACTIVATED, S.REJECTED, S.NEEDS_REENABLE
ROTATING = S.ROTATING

STATES: Final = (_NEW, ACTIVATING, RECOVERING, PENDING, ACTIVATED, REJECTED, REENABLE, ROTATING)
HOLDS_NO_CIK: Final = (_NEW, REJECTED, REENABLE)
"""gatewayd holds no CIK for the node (or has no record of it): one it offers may be
checked and adopted."""
WAITING: Final = (ACTIVATING, RECOVERING, PENDING)
"""The node waits for Exosite: it counts against ``max_pending`` (so does a check under
way), and the status shows the oldest one."""
UNSERVED: Final = (*WAITING, REJECTED, REENABLE)
"""Not activated: the node may stay so until Exosite expires the device (warned of)."""
HELD: Final = (REJECTED, REENABLE)
"""Answered from the record until ``rejected_retry_after`` has passed."""
REVOKING: Final = (ACTIVATING, RECOVERING)
"""With reason ``cik_revoked``: activated again because Exosite refused the node's CIK."""
RETRIED: Final = (PENDING, ROTATING)
"""The next attempt is scheduled: a request, or a rotation's re-enable."""
UNDER_WAY: Final = (ACTIVATING, RECOVERING, ROTATING)
"""A request, a keystore read or a rotation is under way: a bundle's entry waits."""


# ------------------------------------------------------- what is under way, in memory


@dataclass(frozen=True, slots=True)
class Check:
    """A check of a CIK with Exosite under way, and what it was started for."""

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
    """The CIK on its way to Exosite (None: the stored one, not read yet): a check is sent
    once, and only the verdict on that CIK counts."""
    refused: Secret | None = None
    """The stored CIK Exosite refused, while the offered one is checked."""


@dataclass(frozen=True, slots=True)
class Importing:
    """A bundle's entry under way: taken, or answered, once the keystore has been read
    and has kept what it must."""

    entry: Imported
    decided: bool = False
    """The keystore was read, and the entry is to be taken (``take``) or left as held."""
    stored: Secret | None = None
    """The CIK stored for the serial when the keystore was read."""
    take: bool = False


@dataclass(frozen=True, slots=True)
class Work:
    """What gatewayd has under way about a node beside its record; lost at a stop."""

    check: Check | None = None
    reenabling: bool = False
    """A re-enable was sent and is not answered yet."""
    republish: bool = False
    """The operator waits for the keystore's answer to a republish."""
    importing: Importing | None = None
    checked: tuple[tuple[Secret | None, float], ...] = ()
    """When each CIK (None: the stored one) was last checked, on the monotonic clock: each
    is checked at most once per ``check_interval``."""

    @property
    def under_way(self) -> bool:
        """A check, a re-enable or a republish is under way: a bundle's entry is refused."""
        return self.check is not None or self.reenabling or self.republish


IDLE: Final = Work()


@dataclass(frozen=True, slots=True)
class Facts:
    """What a rule reads to pick a trigger: the node's record (None: there is none) and
    work, the settings, and gatewayd's own state."""

    node: Node | None
    work: Work
    settings: Settings
    now: float
    """The monotonic clock, for ``check_interval``."""
    busy: bool = False
    """``max_pending`` nodes (and checks) wait for Exosite."""
    held_over: bool = False
    """The node has been held (rejected, or needing a re-enable) ``rejected_retry_after``."""
    stopping: bool = False

    @property
    def state(self) -> State | None:
        return None if self.node is None else self.node.state


T, C, E = Trigger, Change, Effect
SAVE, REQUEST, STORE, LOOKUP, SCHEDULE = E.SAVE, E.REQUEST, E.STORE, E.LOOKUP, E.SCHEDULE
TELL_CIK, TELL_PENDING, TELL_REJECTED = E.TELL_CIK, E.TELL_PENDING, E.TELL_REJECTED
SET, CLEAR, KEEP = True, False, None

# fmt: off
TRANSITIONS: Final[Mapping[tuple[State | Special | None, Trigger], Row]] = {
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
    **{(state,   T.ANNOUNCE_MODEL):    Row(state, (), (E.TELL_INVALID,)) for state in STATES},
    # -- Exosite's answers: a CIK is stored before anything else happens
    (ACTIVATING, T.ISSUED):    Row(ACTIVATED, (C.ACTIVATED,), (STORE, SAVE, TELL_CIK), CLEAR),
    (ACTIVATING, T.MALFORMED):  Row(REENABLE, (C.NOT_A_CIK,), (STORE, SAVE, TELL_REJECTED), SET),
    (ACTIVATING, T.MALFORMED_AUTO): Row(REENABLE, (C.NOT_A_CIK,), (STORE, SAVE, E.REENABLE), SET),
    **{(state,   T.ISSUED_UNASKED):    Row(state, (), (STORE, E.WARN_UNASKED))
       for state in STATES if state is not ACTIVATING},
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
       for state in UNSERVED},
    # -- a node says Exosite refuses its CIK: checked, at most once per check_interval
    (ACTIVATED,  T.ANNOUNCE_CHECK):    Row(ACTIVATED, (C.CHECK_STORED,), (LOOKUP,)),
    (ACTIVATED,  T.CHECK_FOUND):       Row(ACTIVATED, (C.CHECK_SENT,), (E.CHECK,)),
    (ACTIVATED,  T.OFFERED_STORED):    Row(ACTIVATED, (C.CHECK_DROPPED,), (TELL_CIK,)),
    (ACTIVATED,  T.CIK_ACCEPTED):      Row(ACTIVATED, (), (E.TELL_CHECKED,)),
    (ACTIVATED,  T.CHECK_UNKNOWN):     Row(ACTIVATED, (), (E.WARN_NO_VERDICT, TELL_CIK)),
    (ACTIVATED,  T.CIK_REFUSED): Row(ACTIVATING, (C.REVOKED, C.REQUEST), (SAVE, E.RETIRE, REQUEST)),
    (ACTIVATED,  T.CHECK_OFFERED):     Row(ACTIVATED, (C.CHECK_NEXT,), (E.CHECK,)),
    (ACTIVATED,  T.ADOPTED):
        Row(ACTIVATED, (C.ADOPTED,), (STORE, SAVE, E.RETIRE, E.TELL_ADOPTED), CLEAR),
    (ACTIVATED,  T.STOPPING):          Row(PENDING, (C.REVOKED, C.DUE_NOW), (SAVE, E.RETIRE)),
    (ACTIVATING, T.CIK_REVOKED):       Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, TELL_REJECTED)),
    (ACTIVATING, T.CIK_REVOKED_AUTO):  Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, E.REENABLE), SET),
    # -- the record says the CIK was refused, written before the CIK is retired: a CIK found
    #    then (a stop in between, or the one issued since) is checked again before it is used
    **{(state,   T.REVOKED_FOUND):     Row(state, (C.CHECK_AGAIN,), (E.CHECK,))
       for state in REVOKING},
    **{(state,   T.CIK_ACCEPTED):      Row(ACTIVATED, (C.ACTIVATED,), (SAVE, TELL_CIK), CLEAR)
       for state in REVOKING},
    **{(state,   T.CIK_REFUSED):
        Row(ACTIVATING, (C.REVOKED, C.REQUEST), (SAVE, E.RETIRE, REQUEST)) for state in REVOKING},
    **{(state,   T.CHECK_UNKNOWN):  Row(PENDING, (C.BACKOFF,), (SCHEDULE, SAVE, TELL_PENDING))
       for state in REVOKING},
    (ACTIVATING, T.STOPPING):          Row(PENDING, (C.DUE_NOW,), (SAVE,)),
    # -- an activated record whose CIK was retired, none stored (a stop between the two)
    (ACTIVATED,  T.RETIRED_ONLY):      Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, TELL_REJECTED)),
    (ACTIVATED,  T.RETIRED_ONLY_AUTO): Row(REENABLE, (C.REVOKED_ACTIVE,), (SAVE, E.REENABLE), SET),
    # -- a node offers its CIK where none is stored: checked, and adopted if accepted
    **{(state,   T.ANNOUNCE_ADOPT):    Row(state, (C.CHECK_OFFER,), (E.CHECK,))
       for state in HOLDS_NO_CIK},
    **{(state,   T.ANNOUNCE_CHECKING): Row(state, (), ()) for state in HOLDS_NO_CIK},
    **{(state,   T.ADOPTED): Row(ACTIVATED, (C.MODEL, C.ADOPTED), (STORE, SAVE, E.TELL_ADOPTED),
                                 CLEAR) for state in HOLDS_NO_CIK},
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
    (ACTIVATED,  T.REPUBLISH):         Row(ACTIVATED, (C.REPUBLISH,), (LOOKUP,)),
    (PENDING,    T.RETRY):             Row(ACTIVATING, (C.REQUEST,), (SAVE, REQUEST)),
    (REJECTED,   T.RETRY):             Row(ACTIVATING, (C.REQUEST_AGAIN,), (SAVE, REQUEST)),
    (REENABLE,   T.RETRY):             Row(ACTIVATING, (C.REQUEST_AGAIN,), (SAVE, REQUEST)),
    **{(state,   T.FORGET):            Row(_NEW, (), (E.DELETE,))
       for state in (PENDING, ACTIVATED, REJECTED, REENABLE)},
    # -- a bundle's entry (gatewayctl import), whether gatewayd runs or not: the keystore
    #    is read, the entry decided on (see imported_found), the bundle's retired CIKs kept
    #    and a stored CIK it replaces retired, then the entry taken or answered
    (ANY,        T.IMPORT):            Row(ANY, (C.IMPORT,), (E.LOOKUP_ALL,)),
    (ANY,        T.IMPORT_REFUSED):    Row(ANY, (C.IMPORT_OVER,), (E.TELL_OPERATOR,)),
    (ANY,        T.IMPORT_KEPT):       Row(ANY, (C.IMPORT_OVER,), (E.TELL_OPERATOR,)),
    (ANY,        T.IMPORT_UNCHANGED):  Row(ANY, (C.IMPORT_FOUND,), (E.KEEP_RETIRED,)),
    (ANY,        T.IMPORT_TAKE):       Row(ANY, (C.IMPORT_FOUND,), (E.KEEP_RETIRED,)),
    (ANY,        T.IMPORT_LEFT):       Row(ANY, (C.IMPORT_OVER,), (E.TELL_OPERATOR,)),
    (ANY,        T.IMPORT_UNKEPT):     Row(ANY, (C.IMPORT_OVER,), (E.TELL_OPERATOR,)),
    (ANY,        T.IMPORT_TAKEN):      Row(TAKEN, (C.IMPORT_OVER,),
                                           (E.STORE_IMPORTED, SAVE, E.TELL_IMPORTED,
                                            E.TELL_OPERATOR)),
}
# fmt: on

# ----------------------------------------------------------------- the rules beside it
#
# Which trigger an event is, read from the node's Facts alone; then what an event ends of
# the node's work whatever its row (settle), and the rows that give way while gatewayd
# stops (row_for).

VERDICTS: Final = {
    Verdict.ACCEPTED: Trigger.CIK_ACCEPTED,
    Verdict.REFUSED: Trigger.CIK_REFUSED,
    Verdict.UNKNOWN: Trigger.CHECK_UNKNOWN,
}
"""The trigger of each verdict on a stored CIK."""


@dataclass(frozen=True, slots=True)
class Next:
    """A trigger, with what its row needs beside the event: the CIK, the detail, the model
    the node named, and a CIK to retire once the one that replaces it is stored."""

    trigger: Trigger
    cik: Secret | None = None
    detail: str = ""
    model: str | None = None
    retired: Secret | None = None


def reenabling(node: Node, settings: Settings) -> bool:
    """gatewayd itself is re-enabling the node's serial (a failure clears ``uncertain``)."""
    return node.state is REENABLE and node.uncertain and settings.auto_reenable


def revoking(node: Node) -> bool:
    """The node is activated again because Exosite refused its CIK."""
    return node.state in REVOKING and node.reason is Reason.CIK_REVOKED


def may_check(node: Node | None, *, held_over: bool) -> bool:
    """Exosite could know the serial: not when its last answer was a 404 (or a 403 for its
    vendor and model) and ``rejected_retry_after`` has not passed."""
    if node is None or node.state is not REJECTED or held_over:
        return True
    return node.reason not in {Reason.UNKNOWN_SERIAL, Reason.INVALID_VENDOR_MODEL}


def check_due(facts: Facts, cik: Secret | None) -> bool:
    """A check of ``cik`` (None: the stored CIK) may start: none of the node is under way,
    fewer than ``max_pending`` nodes wait for Exosite, and this CIK was not checked within
    ``check_interval``."""
    return not facts.busy and facts.work.check is None and checked_long_ago(facts, cik)


def checked_long_ago(facts: Facts, cik: Secret | None) -> bool:
    """``cik`` (None: the stored CIK) was not checked within ``check_interval``."""
    interval = facts.settings.check_interval
    return all(facts.now - when >= interval for key, when in facts.work.checked if key == cik)


def announced(event: Announced, facts: Facts) -> Trigger:
    """An announce, by the guards in the order they apply:

    - a model not in ``exosite.models``: invalid;
    - a new serial while ``max_pending`` nodes wait: come back later;
    - a node whose serial gatewayd is re-enabling: pending;
    - a node offering its CIK where gatewayd holds none: while that CIK is checked, it
      waits for the verdict; if gatewayd can prove whose a CIK is (a vendor token),
      Exosite could know the serial and a check is due, the CIK is checked, and adopted
      if it is the serial's own;
    - a node held after ``rejected_retry_after``: asked about again;
    - an activated node saying Exosite refuses its CIK (``cik_rejected``), or offering
      another one that could be adopted, and a check is due: its stored CIK is checked.

    Without a vendor token a CIK an announce offers is ignored."""
    node, state, settings = facts.node, facts.state, facts.settings
    if event.model is not None and event.model not in settings.models:
        return Trigger.ANNOUNCE_MODEL
    if node is None and facts.busy:
        return Trigger.ANNOUNCE_BUSY
    if node is not None and reenabling(node, settings):
        return Trigger.ANNOUNCE_REENABLING
    if state in HOLDS_NO_CIK and facts.work.check is not None:
        return Trigger.ANNOUNCE_CHECKING
    held_over = state in HELD and facts.held_over
    offered = event.cik if settings.adopt else None
    if (
        offered is not None
        and state in HOLDS_NO_CIK
        and may_check(node, held_over=held_over)
        and check_due(facts, offered)
    ):
        return Trigger.ANNOUNCE_ADOPT
    if held_over:
        return Trigger.ANNOUNCE_LATE
    asks = event.cik_rejected or offered is not None
    if asks and state is ACTIVATED and check_due(facts, None):
        return Trigger.ANNOUNCE_CHECK
    return Trigger.ANNOUNCE


def answered(event: ActivationAnswered, facts: Facts) -> Trigger:
    """Exosite's answer to an activation: a CIK with no request of it in flight is kept
    apart; a CIK for a rotation replaces the rotated one."""
    outcome: Outcome = event.outcome
    node = facts.node
    match outcome:
        case Issued() if facts.state is not ACTIVATING:
            return Trigger.ISSUED_UNASKED
        case Issued(problem=None) if node is not None and node.reason is Reason.ROTATION:
            return Trigger.ISSUED_ROTATED
        case Issued(problem=None):
            return Trigger.ISSUED
        case Issued():
            return Trigger.MALFORMED_AUTO if facts.settings.auto_reenable else Trigger.MALFORMED
        case Refused(http_status=409):
            return Trigger.CONFLICT
        case Refused():
            return Trigger.REFUSED
        case Failed(maybe_delivered=True):
            return Trigger.FAILED_MAYBE
        case Failed():
            return Trigger.FAILED


def looked_up(event: CikLookedUp, facts: Facts) -> Next:
    """The keystore's answer: for a bundle's entry waiting for it, see :func:`imported_found`;
    else the trigger of the CIK stored for the node (:func:`found`)."""
    importing = facts.work.importing
    if importing is not None and not importing.decided:
        return imported_found(importing.entry, event, facts)
    return Next(found(event, facts), event.cik)


def found(event: CikLookedUp, facts: Facts) -> Trigger:
    """The CIK stored for the node (None: none is; ``retired``: one of the serial's was
    retired), maybe with a check of it waiting."""
    node, cik, check = facts.node, event.cik, facts.work.check
    auto = facts.settings.auto_reenable
    if event.error is not None:
        return Trigger.LOOKUP_FAILED
    if cik is not None and node is not None and check is not None:
        if check.cik is not None:  # sent already: a re-announce meanwhile is answered
            return Trigger.CIK_FOUND
        if not check.rejected and check.offered == cik:
            return Trigger.OFFERED_STORED  # it offers the very CIK stored: nothing to check
        return Trigger.CHECK_FOUND
    if cik is not None and node is not None and revoking(node):
        # the record says Exosite refused the node's CIK: this one may be that CIK, not
        # yet retired (a stop in between), or the one issued since
        return Trigger.REVOKED_FOUND
    if cik is not None:
        return Trigger.CIK_FOUND
    if node is not None and node.state is ACTIVATED and event.retired:
        return Trigger.RETIRED_ONLY_AUTO if auto else Trigger.RETIRED_ONLY
    if node is not None and node.state is ACTIVATING and node.reason is Reason.CIK_REVOKED:
        # a 409 after a refused CIK: the device must be re-enabled before a new one
        return Trigger.CIK_REVOKED_AUTO if auto else Trigger.CIK_REVOKED
    if node is not None and node.state is ACTIVATING and node.uncertain:
        # a 409, nothing stored, and our own request may have been given the CIK: lost (a
        # rotation re-enables the serial again: it has the vendor token)
        auto = auto or node.reason is Reason.ROTATION
        return Trigger.CIK_LOST_AUTO if auto else Trigger.CIK_LOST
    return Trigger.CIK_MISSING


def imported_found(entry: Imported, event: CikLookedUp, facts: Facts) -> Next:
    """What becomes of a bundle's entry, from what the keystore holds for its serial; the
    same whether gatewayd runs or not. In this order:

    - the keystore cannot be read, or the CIK is one the gateway retired (Exosite refused
      it, it was rotated, or an import replaced it), however long ago: refused;
    - a node with a request, a check, a republish or a re-enable under way (or, gatewayd
      stopped, whose record says one was when it stopped): refused; imported again once
      it is answered, it is then decided on as below;
    - a node activated here with its CIK stored, whose bundle record is not activated and
      holds another CIK: kept as stored;
    - a node whose stored CIK differs from the bundle's: kept as stored, unless the
      operator prefers the bundle (``--prefer-bundle``): then taken, the stored CIK
      retired first;
    - a node known here whose stored CIK is the bundle's, or for which the bundle holds no
      CIK: left as it is (already held);
    - any other entry is taken: a node unknown here, or one with no CIK stored for which
      the bundle holds one.

    The bundle's retired CIKs are kept with the gateway's before an entry is taken or left
    as it is. The ``cik`` of the result is the one stored."""
    sn, cik, stored = entry.node.sn, entry.cik, event.cik
    if event.error is not None:
        return Next(Trigger.IMPORT_REFUSED, detail=f"{sn}: not imported: {event.error}")
    if cik is not None and cik in event.retired_ciks:
        return Next(Trigger.IMPORT_REFUSED, detail=f"{sn}: {imports.RETIRED}")
    if facts.work.under_way or facts.state in UNDER_WAY or stopped_under_way(facts):
        return Next(Trigger.IMPORT_REFUSED, detail=f"{sn}: {imports.BUSY}")
    held = facts.state is ACTIVATED and stored is not None
    if held and cik is not None and cik != stored and entry.node.state is not ACTIVATED:
        said = (
            f"kept as stored: activated here, and the bundle's record of it is {entry.node.state}"
        )
        return Next(Trigger.IMPORT_KEPT, detail=f"{sn}: {said}")
    replaces = stored is not None and cik is not None and stored != cik
    if replaces and not entry.prefer_bundle:
        return Next(Trigger.IMPORT_KEPT, detail=f"{sn}: {imports.KEPT}")
    if facts.node is not None and not replaces and (stored is not None or cik is None):
        return Next(Trigger.IMPORT_UNCHANGED, stored)
    return Next(Trigger.IMPORT_TAKE, stored)


def stopped_under_way(facts: Facts) -> bool:
    """gatewayd is stopped (or stops), and the node's record says something was under way
    when it stopped, which gatewayd finishes at its next start (:func:`unfinished`)."""
    return (
        facts.stopping
        and facts.node is not None
        and unfinished(facts.node, facts.settings) is not None
    )


def taken_then(node: Node, facts: Facts) -> Trigger | None:
    """What a record taken from a bundle left unfinished, finished as at a start; while
    gatewayd stops (or is stopped: gatewayctl's import), at its next start instead."""
    return None if facts.stopping else unfinished(node, facts.settings)


def retired_kept(event: RetiredKept, facts: Facts) -> Next | None:
    """The keystore kept a bundle's retired CIKs (and retired the CIK the entry replaces),
    or could not: the entry is taken, left as it is held, or refused. None when no entry
    waits for it."""
    importing = facts.work.importing
    if importing is None or not importing.decided:
        return None
    sn = importing.entry.node.sn
    if event.error is not None:
        words = imports.UNRETIRED if event.unretired else imports.UNKEPT
        return Next(Trigger.IMPORT_UNKEPT, detail=f"{sn}: {words}: {event.error}")
    return Next(Trigger.IMPORT_TAKEN if importing.take else Trigger.IMPORT_LEFT)


def verdict(event: CikChecked, facts: Facts) -> Next | Announced | None:
    """Exosite's verdict on a CIK: the trigger, or the announce to go on with, its offered
    CIK set aside (not adopted); None for a verdict no check waits for (the check was
    ended, or was of another CIK): it decides nothing.

    - a CIK offered where none is stored: adopted if accepted;
    - the node's own, checked after Exosite refused the stored one: adopted if accepted,
      else the stored one is refused;
    - the stored CIK refused, and the node offered another whose check is due: that one
      is checked next, as the serial's own;
    - else the verdict on the stored CIK."""
    check, cik = facts.work.check, event.cik
    if check is None or check.cik != cik:
        return None
    accepted = event.verdict is Verdict.ACCEPTED
    if check.offer is not None:
        if accepted:
            return Next(Trigger.ADOPTED, cik, event.detail, check.offer.model)
        return dataclasses.replace(check.offer, cik=None, response=None)
    if check.refusal is not None:
        if accepted:
            return Next(Trigger.ADOPTED, cik, check.refusal, retired=check.refused)
        return Next(Trigger.CIK_REFUSED, check.refused, check.refusal)
    offered = check.offered
    if (
        event.verdict is Verdict.REFUSED
        and offered is not None
        and offered != cik
        and checked_long_ago(facts, offered)
    ):
        return Next(Trigger.CHECK_OFFERED, offered, event.detail, retired=cik)
    return Next(VERDICTS[event.verdict], cik, event.detail)


def reenable_answered(event: ReenableAnswered | RequestUnsent, facts: Facts) -> Trigger:
    """The vendor API's answer to a re-enable, or a request not sent (its write-ahead
    record, or the retire before it, failed). A rotation's re-enable that failed but may
    have been carried out (this one, or one before a restart) is not a failure."""
    node = facts.node
    if isinstance(event, RequestUnsent):
        return Trigger.UNSAVED
    if event.error is None:
        return Trigger.REENABLED
    if node is not None and node.state is ROTATING and (event.maybe_done or node.uncertain):
        return Trigger.REENABLE_MAYBE
    return Trigger.REENABLE_FAILED


def unfinished(node: Node, settings: Settings) -> Trigger | None:
    """What a record found at start (or imported) left unfinished: a request in flight
    (its keystore is read first), a re-enable gatewayd had started, a rotation."""
    if node.state is ACTIVATING:
        return Trigger.RESTARTED
    if reenabling(node, settings):
        return Trigger.RESTARTED_REENABLING
    if node.state is ROTATING:
        return Trigger.RESTARTED_ROTATING
    return None


def refusal(node: Node | None, trigger: Trigger, settings: Settings) -> str | None:
    """Why an operator's command cannot act on ``node`` now, or None if it can."""
    in_flight = "a request about it is in flight; try again once it is answered"
    if node is None:
        return "no such node"
    if (node.state, trigger) in TRANSITIONS:
        if not reenabling(node, settings):
            return None
        if trigger is Trigger.FORGET:
            return in_flight
        return "gatewayd is re-enabling it at Exosite; its activation follows"
    if trigger is Trigger.REPUBLISH:
        return f"not activated (it is {node.state}): there are no credentials to republish"
    if trigger is Trigger.ROTATE:
        return f"not activated (it is {node.state}): there is no CIK to rotate"
    if trigger is Trigger.FORGET:
        return in_flight
    if node.state is ACTIVATED:
        return "already activated: Exosite would refuse another activation"
    return f"a request about it is in flight (it is {node.state})"


def settle(work: Work, event: Event) -> Work:
    """What an event ends of the node's work, whatever its row:

    - a verdict ends the check it answers;
    - the keystore's answer ends a republish waited for, and, when it holds no CIK, a
      check waiting to send the stored one;
    - the vendor API's answer, or a request not sent, ends the re-enable under way;
    - the operator's retry, forget or rotate ends a check: a verdict later is ignored."""
    match event:
        case CikChecked(cik=cik) if work.check is not None and work.check.cik == cik:
            return dataclasses.replace(work, check=None)
        case CikLookedUp(cik=None) if work.check is not None and work.check.cik is None:
            return dataclasses.replace(work, check=None, republish=False)
        case CikLookedUp() if work.republish:
            return dataclasses.replace(work, republish=False)
        case ReenableAnswered() | RequestUnsent() if work.reenabling:
            return dataclasses.replace(work, reenabling=False)
        case Retry() | Forget() | Rotate() if work.check is not None:
            return dataclasses.replace(work, check=None)
    return work


def row_for(state: State | None, trigger: Trigger, *, stopping: bool) -> tuple[Trigger, Row | None]:
    """The row of ``trigger`` for ``state`` (None: there is none), and the trigger it is
    for. While gatewayd stops, a row that would send a request, and a rotation's retried
    re-enable, give way to the stopping row: ``REENABLED_STOPPING`` for ``REENABLED``,
    ``STOPPING`` for any other trigger."""
    row = TRANSITIONS.get((state, trigger)) or TRANSITIONS.get((ANY, trigger))
    if row is None or not stopping:
        return trigger, row
    if Effect.REQUEST in row.effects or trigger is Trigger.RETRY_DUE:
        trigger = Trigger.REENABLED_STOPPING if trigger is Trigger.REENABLED else Trigger.STOPPING
        return trigger, TRANSITIONS.get((state, trigger))
    return trigger, row


def as_table() -> str:
    """``TRANSITIONS`` as a Markdown table, for the README (``make readme-table``)."""
    lines = [
        "| state | trigger | next state | record | uncertain | what gatewayd does, in order |",
        "|---|---|---|---|---|---|",
    ]
    flag = {True: "set", False: "cleared", None: ""}
    for (state, trigger), row in TRANSITIONS.items():
        before = _shown(state)
        after = "(the same)" if row.target is ANY else _shown(row.target)
        changed = "; ".join(change.value for change in row.changes)
        done = "; ".join(effect.value for effect in row.effects) or "nothing"
        lines.append(
            f"| {before} | {trigger.value} | {after} | {changed} | {flag[row.uncertain]} | {done} |"
        )
    return "\n".join(lines) + "\n"


def _shown(state: State | Special | None) -> str:
    if state is None:
        return "(none)"
    return state.value if isinstance(state, Special) else f"`{state}`"
