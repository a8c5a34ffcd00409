"""The node model: its states, the reasons of a rejection, a node's record, the engine's
settings and where an answer goes.

All of them are frozen, slotted dataclasses (or string enums, as stored).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    """A node's state, as stored in the state database."""

    ACTIVATING = "activating"  # a request is in flight (or was, when gatewayd stopped)
    RECOVERING = "recovering"  # was activating when gatewayd stopped: the keyring is read first
    PENDING = "pending"  # a transient failure; the next attempt is scheduled
    ACTIVATED = "activated"  # the CIK is in the keyring
    REJECTED = "rejected"  # Exosite refused; answered from the record for a while
    NEEDS_REENABLE = "needs_reenable"  # 409 after our own request may have got the CIK: lost
    ROTATING = "rotating"  # the operator rotates its CIK: the serial is being re-enabled


class Reason(enum.StrEnum):
    """Why a node was rejected; part of the node-facing contract."""

    UNKNOWN_SERIAL = "unknown_serial"
    INVALID_VENDOR_MODEL = "invalid_vendor_model"
    NOT_ACTIVATABLE = "not_activatable"
    API_ERROR = "api_error"
    INVALID_REQUEST = "invalid_request"
    CIK_REVOKED = "cik_revoked"
    ROTATION = "rotation"  # not a rejection: the activation under way replaces a rotated CIK


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
    check_interval: float = 300.0
    """At most one check of a node's CIK with Exosite per this many seconds."""
    adopt: bool = False
    """A vendor token is configured: whose a CIK is can be proved, so a CIK a node
    offers may be adopted."""


@dataclass(frozen=True, slots=True)
class ResponseTarget:
    """An MQTT 5 Response Topic, with the Correlation Data to echo."""

    topic: str
    correlation: bytes | None = None
