"""What flows out of the engine: the actions the daemon's executor carries out, in order,
and the answers nodes are told.

All of them are frozen, slotted dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.core.model import Node, Reason, ResponseTarget, State
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret

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
    checked: bool = False
    """The CIK was checked with Exosite for this answer, and accepted."""
    adopted: bool = False
    """The CIK is the one the node offered, checked with Exosite and kept."""


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
    """Read the stored CIK (and, ``retired_ciks``, every CIK of the serial retired) and
    answer with a ``CikLookedUp`` event."""

    sn: str
    vendor: str
    model: str
    retired_ciks: bool = False


@dataclass(frozen=True, slots=True)
class KeepRetired:
    """Keep a bundle's retired CIKs with the serial's, then (``replace``) retire the stored
    CIK, each on disk; answer with a ``RetiredKept`` event."""

    sn: str
    vendor: str
    model: str
    retired: tuple[Retired, ...]
    replace: bool


@dataclass(frozen=True, slots=True)
class CheckCik:
    """Ask Exosite whether it accepts ``cik`` as ``sn``'s (``owner``: whether it is ``sn``'s
    own, before it is adopted), and answer with a ``CikChecked`` event."""

    sn: str
    vendor: str
    model: str
    cik: Secret
    owner: bool = False


@dataclass(frozen=True, slots=True)
class RetireCik:
    """Move the stored CIK apart, durably, before anything else; ``why``, in words, is kept
    with it."""

    sn: str
    vendor: str
    model: str
    why: str = "refused by Exosite"
    cik: Secret | None = None
    """The CIK to retire, when it is not (or no longer) the one stored: it joins the
    retired ones, and the one stored stays."""


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


Action = (
    Activate
    | StoreCik
    | LookupCik
    | CheckCik
    | RetireCik
    | KeepRetired
    | Reenable
    | SaveNode
    | DeleteNode
    | Publish
    | Log
    | Result
)
