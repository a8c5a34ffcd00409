"""The values that flow in and out of the engine: settings, node records, events, actions.

All of them are frozen, slotted dataclasses. Adapters build events and carry
out actions; the engine (``gatewayd.core.engine``) turns one into the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gatewayd.core.secret import Secret


class State(enum.StrEnum):
    """A node's state, as stored in the state database."""

    ACTIVATING = "activating"  # a request is in flight (or was, when gatewayd stopped)
    RECOVERING = "recovering"  # was activating when gatewayd stopped: the keyring is read first
    PENDING = "pending"  # a transient failure; the next attempt is scheduled
    ACTIVATED = "activated"  # the CIK is in the keyring
    REJECTED = "rejected"  # Exosite refused; answered from the record for a while
    NEEDS_REENABLE = "needs_reenable"  # 409 after our own request may have got the CIK: lost


class Reason(enum.StrEnum):
    """Why a node was rejected; part of the node-facing contract."""

    UNKNOWN_SERIAL = "unknown_serial"
    INVALID_VENDOR_MODEL = "invalid_vendor_model"
    NOT_ACTIVATABLE = "not_activatable"
    API_ERROR = "api_error"
    INVALID_REQUEST = "invalid_request"


@dataclass(frozen=True, slots=True)
class Node:
    """Everything gatewayd knows about a node, except its CIK."""

    sn: str
    vendor: str
    model: str
    state: State
    first_seen: float
    attempts: int = 0
    next_attempt: float | None = None
    last_error: str | None = None
    reason: Reason | None = None
    http_status: int | None = None
    rejected_at: float | None = None
    activated_at: float | None = None
    expiry_warned: bool = False
    request_started: float | None = None  # write-ahead: when the last request was sent
    request_form: str | None = None  # write-ahead: "onep" or "murano"
    uncertain: bool = False  # a request of ours may have reached Exosite unanswered


@dataclass(frozen=True, slots=True)
class Settings:
    """What the engine needs from the configuration; replaced on reload."""

    vendor: str
    model: str
    models: frozenset[str]
    rejected_retry_after: float = 300.0
    api: str = "onep"
    auto_reenable: bool = False
    backoff_base: float = 5.0
    backoff_factor: float = 2.0
    backoff_cap: float = 15 * 60.0
    max_pending: int = 1000


@dataclass(frozen=True, slots=True)
class ResponseTarget:
    """An MQTT 5 Response Topic, with the Correlation Data to echo."""

    topic: str
    correlation: bytes | None = None


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Issued:
    """Exosite (or something in the way) answered 2xx: the body may be the CIK.

    ``problem`` says why the body is not a complete CIK (cut short, empty, not
    40 visible characters, markup, another 2xx than 200); such a body is kept,
    unverified, and never handed to a node as its CIK.
    """

    cik: Secret
    problem: str | None = None

    @property
    def well_formed(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class Refused:
    """Exosite answered a 4xx other than 429: a decision about this serial."""

    http_status: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A transient failure: 5xx, 429, timeout, connection or TLS error.

    ``maybe_delivered`` is set when the request may have reached Exosite and
    been acted on (a read timeout, a connection lost after sending): then a
    CIK may have been issued that never arrived.
    """

    error: str
    http_status: int | None = None
    maybe_delivered: bool = False


Outcome = Issued | Refused | Failed


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Announced:
    """A well-formed announce from a node."""

    sn: str
    model: str | None = None
    response: ResponseTarget | None = None


@dataclass(frozen=True, slots=True)
class BadAnnounce:
    """An announce that cannot be acted on; ``sn`` is set when it can be answered."""

    message: str
    sn: str | None = None
    response: ResponseTarget | None = None


@dataclass(frozen=True, slots=True)
class ActivationAnswered:
    """The Exosite client finished a request for ``sn``."""

    sn: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class CikLookedUp:
    """The keystore was read for ``sn``; ``cik`` is None when nothing is stored.

    ``error`` is set when the keystore could not be read at all: then nothing
    is known about the CIK.
    """

    sn: str
    cik: Secret | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RequestUnsent:
    """The record written ahead of a request for ``sn`` could not be saved: the request
    (an activation or a re-enable) was not sent."""

    sn: str
    error: str


@dataclass(frozen=True, slots=True)
class ReenableAnswered:
    """The vendor management API answered a re-enable for ``sn``; ``error`` if it failed."""

    sn: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed: due retries and warnings fire."""


@dataclass(frozen=True, slots=True)
class Drain:
    """gatewayd is stopping: no new request starts from now on."""


@dataclass(frozen=True, slots=True)
class Republish:
    """The operator asks for an activated node's credentials to be published again."""

    sn: str


@dataclass(frozen=True, slots=True)
class Retry:
    """The operator clears a rejection, ``needs_reenable`` or a wait, and has it tried now."""

    sn: str


@dataclass(frozen=True, slots=True)
class Forget:
    """The operator deletes a node's record and CIK."""

    sn: str


Event = (
    Announced
    | BadAnnounce
    | ActivationAnswered
    | CikLookedUp
    | RequestUnsent
    | ReenableAnswered
    | Tick
    | Drain
    | Republish
    | Retry
    | Forget
)


# ----------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Answer:
    """What a node is told on its credentials topic (see the README's contract)."""

    sn: str
    status: str  # "activated" | "pending" | "rejected"
    vendor: str | None = None
    model: str | None = None
    cik: Secret | None = None
    retry_in: int | None = None
    reason: Reason | None = None
    http_status: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Activate:
    """Send one activation request to Exosite."""

    sn: str
    vendor: str
    model: str


@dataclass(frozen=True, slots=True)
class StoreCik:
    """Write the CIK to the keystore, durably, before anything else happens.

    An ``unverified`` body (a 2xx that is not a complete CIK) is kept apart from
    the node's CIK, for the operator: it is never read back as one.
    """

    sn: str
    vendor: str
    model: str
    cik: Secret
    unverified: bool = False


@dataclass(frozen=True, slots=True)
class LookupCik:
    """Read the stored CIK and answer with a ``CikLookedUp`` event."""

    sn: str
    vendor: str
    model: str


@dataclass(frozen=True, slots=True)
class Reenable:
    """Ask the vendor management API to re-enable ``sn`` (a fresh CIK can then be issued)."""

    sn: str
    vendor: str
    model: str


@dataclass(frozen=True, slots=True)
class SaveNode:
    """Write the node's record to the state database."""

    node: Node


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish an answer on the node's credentials topic and each response topic."""

    answer: Answer
    responses: tuple[ResponseTarget, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteNode:
    """Delete the node's CIK from the keystore, then its record from the state database."""

    sn: str
    vendor: str
    model: str


@dataclass(frozen=True, slots=True)
class Result:
    """How an operator's command went, in words for the operator."""

    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class Log:
    """A journal line about a node: ``kind`` is stable and has a MESSAGE_ID."""

    kind: str
    level: int
    message: str
    sn: str | None = None
    state: State | None = None
    http_status: int | None = None
    fields: tuple[tuple[str, str], ...] = field(default=())


Action = Activate | StoreCik | LookupCik | Reenable | SaveNode | DeleteNode | Publish | Log | Result


# ------------------------------------------------- from the broker link (gatewayd.adapters.mqtt)


@dataclass(frozen=True, slots=True)
class Connected:
    """The broker accepted the connection and answered the announce subscription."""

    session_present: bool
    subscribed: bool = True


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation: bytes | None = None


LinkEvent = Connected | Disconnected | Message
