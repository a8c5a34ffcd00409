"""What flows into the engine: the outcomes of a request, the events the daemon feeds it,
and what the broker link reports.

All of them are frozen, slotted dataclasses; adapters build them, the engine
(:mod:`gatewayd.core.engine`) takes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gatewayd.core.model import Node, ResponseTarget
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret

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
    cik_rejected: bool = False
    """The node says Exosite refuses (401) the CIK it holds."""
    cik: Secret | None = None
    """The CIK the node holds, when it offers it."""


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


class Verdict(enum.StrEnum):
    """What Exosite said of a CIK when asked (:mod:`gatewayd.adapters.cikcheck`)."""

    ACCEPTED = "accepted"  # Exosite accepts it (and, asked whose it is: the serial's own)
    REFUSED = "refused"  # Exosite refuses it (or proves it another device's)
    UNKNOWN = "unknown"  # anything else, or no answer: nothing is decided


@dataclass(frozen=True, slots=True)
class CikChecked:
    """Exosite was asked about ``cik``, the CIK of ``sn``; ``detail`` says what it answered."""

    sn: str
    cik: Secret
    verdict: Verdict
    detail: str


@dataclass(frozen=True, slots=True)
class CikLookedUp:
    """The keystore was read for ``sn``; ``cik`` is None when nothing is stored.

    ``error`` is set when the keystore could not be read at all: then nothing
    is known about the CIK. ``retired``: nothing is stored, but a CIK of the
    serial was retired (Exosite refused it, or it was rotated away).
    ``retired_ciks``: every CIK of the serial retired, when the read asked for them.
    """

    sn: str
    cik: Secret | None
    error: str | None = None
    retired: bool = False
    retired_ciks: frozenset[Secret] = frozenset()


@dataclass(frozen=True, slots=True)
class RetiredKept:
    """The keystore kept a bundle's retired CIKs for ``sn``, and retired the stored CIK the
    entry replaces (``error`` None), or could not (``unretired``: the stored CIK could not
    be retired; else the bundle's retired CIKs could not be kept)."""

    sn: str
    error: str | None = None
    unretired: bool = False


@dataclass(frozen=True, slots=True)
class RequestUnsent:
    """The record written ahead of a request for ``sn`` could not be saved: the request
    (an activation or a re-enable) was not sent."""

    sn: str
    error: str


@dataclass(frozen=True, slots=True)
class ReenableAnswered:
    """The vendor management API answered a re-enable for ``sn``; ``error`` if it failed,
    and ``maybe_done`` if it may have been carried out all the same (a timeout after the
    request was sent, a 5xx, the connection lost after it)."""

    sn: str
    error: str | None = None
    maybe_done: bool = False


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
class Rotate:
    """The operator replaces a node's CIK: re-enable, activate, store, publish, retire."""

    sn: str


@dataclass(frozen=True, slots=True)
class Forget:
    """The operator deletes a node's record and CIK."""

    sn: str


@dataclass(frozen=True, slots=True)
class Imported:
    """A bundle's entry for a node (``gatewayctl import``), taken by the engine whether
    gatewayd runs or not: the node's record, its CIK, and the CIKs the bundle lists as
    retired for it. ``prefer_bundle``: a stored CIK that differs from the bundle's is
    replaced."""

    node: Node
    cik: Secret | None
    prefer_bundle: bool = False
    retired: tuple[Retired, ...] = ()


Event = (
    Announced
    | BadAnnounce
    | ActivationAnswered
    | CikChecked
    | CikLookedUp
    | RequestUnsent
    | ReenableAnswered
    | Tick
    | Drain
    | Republish
    | Retry
    | Forget
    | Rotate
    | Imported
    | RetiredKept
)


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
