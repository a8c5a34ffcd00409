"""What nodes and operators are told: the answers and journal lines of node events.

The engine decides; this module words. No text here ever includes a CIK: the
``activated`` answer carries it as a :class:`~gatewayd.core.secret.Secret`.
"""

from __future__ import annotations

import logging
import math
from typing import Final

from gatewayd.core.actions import Answer, Log
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.secret import Secret

REASON_TEXT: Final[dict[Reason, str]] = {
    Reason.UNKNOWN_SERIAL: "Exosite does not know this serial number",
    Reason.INVALID_VENDOR_MODEL: "Exosite does not accept this vendor/model pair",
    Reason.NOT_ACTIVATABLE: (
        "Exosite refused activation: the device is not added to a portal, is already "
        "activated, or its 24 h activation window expired; re-enable it in Portals"
    ),
    Reason.API_ERROR: "Exosite rejected the request",
}

CIK_MISSING: Final = "the stored CIK is missing from the keyring"
REENABLE_RETRY_HINT: Final = 5
"""retry_in told to a node while gatewayd re-enables its serial."""
UNREADABLE_RETRY_HINT: Final = 30
"""retry_in told to an activated node whose stored CIK cannot be read."""
REENABLE_BY_HAND: Final = "re-enable the device in Portals, then re-announce it"
CIK_LOST_AUTO: Final = (
    "Exosite answered 409 after a request of this gateway's that may have been given "
    "the CIK, which was lost; gatewayd is re-enabling the device"
)


def cik_lost(sn: str) -> str:
    return (
        "Exosite answered 409 after a request of this gateway's that may have been given "
        f"the CIK, which was lost; {REENABLE_BY_HAND} (serial {sn})"
    )


def revoked(sn: str, *, auto: bool) -> str:
    """A CIK Exosite refused (re-enabled or regenerated in Portals), the device still
    activated there."""
    then = "gatewayd is re-enabling the device" if auto else f"{REENABLE_BY_HAND} (serial {sn})"
    return f"the CIK was revoked at Exosite, and the device is still activated there; {then}"


def checked_log(node: Node) -> Log:
    return Log("cik_checked", logging.INFO, "CIK checked: Exosite accepts it", node.sn, node.state)


def rotation_unsure(error: str) -> str:
    return (
        f"rotation: re-enabling the serial may have been carried out ({error}); the old CIK is "
        "no longer handed out, and the re-enable is asked for again"
    )


def rotation_failed(error: str) -> str:
    return f"rotation failed: re-enabling the serial failed ({error}); the CIK is unchanged"


def rotation_log(node: Node) -> Log:
    text = "rotation: re-enabled at Exosite, the old CIK retired; activating again"
    return Log("rotated", logging.INFO, text, node.sn, node.state)


def adopted_log(node: Node) -> Log:
    text = "CIK adopted from its node: Exosite accepts it"
    return Log("cik_adopted", logging.INFO, text, node.sn, node.state)


def no_verdict_log(node: Node, detail: str) -> Log:
    text = (
        f"CIK check: no verdict from Exosite ({detail}); nothing is retired, and the node is "
        "answered from the keyring"
    )
    return Log("cik_no_verdict", logging.WARNING, text, node.sn, node.state)


def not_adopted_log(sn: str, state: State | None, detail: str, *, unknown: bool) -> Log:
    why = f"no verdict ({detail})" if unknown else detail
    text = f"the CIK the node offered is not adopted: {why}; it goes on as an announce without it"
    return Log("cik_not_adopted", logging.WARNING, text, sn, state)


def refused_log(node: Node, detail: str, *, adopted: bool = False) -> Log:
    then = "the CIK the node offered is adopted" if adopted else "the node activated again"
    text = f"Exosite refuses the CIK ({detail}): it is retired, and {then}"
    return Log("cik_refused", logging.WARNING, text, node.sn, node.state)


def not_a_cik(sn: str, problem: str, *, auto: bool) -> str:
    then = "gatewayd is re-enabling the device" if auto else f"{REENABLE_BY_HAND} (serial {sn})"
    return (
        f"Exosite's answer was a success, but its body is not a CIK ({problem}); the CIK "
        f"it may have issued never arrived whole; {then}"
    )


def rejection(reason: Reason, http_status: int) -> str:
    return f"{REASON_TEXT[reason]} (HTTP {http_status})"


# ------------------------------------------------------------------ answers


def activated(node: Node, cik: Secret | None) -> Answer:
    return Answer(node.sn, "activated", node.vendor, node.model, cik)


def pending(node: Node, delay: float) -> Answer:
    """A node told to wait; ``delay``: seconds until gatewayd's next attempt."""
    if node.state is State.ACTIVATED:  # its CIK is stored, but cannot be read now
        text = "the gateway cannot read its stored credentials now; announce again later"
        return Answer(node.sn, "pending", retry_in=UNREADABLE_RETRY_HINT, message=text)
    if node.state is State.NEEDS_REENABLE:
        text = "gatewayd is re-enabling the device at Exosite; its credentials follow"
        return Answer(node.sn, "pending", retry_in=REENABLE_RETRY_HINT, message=text)
    if node.state is State.ROTATING and delay <= 0:  # the re-enable is under way
        text = "gatewayd is rotating the device's CIK at Exosite; its new credentials follow"
        return Answer(node.sn, "pending", retry_in=REENABLE_RETRY_HINT, message=text)
    if node.http_status is not None:
        text = f"Exosite answered HTTP {node.http_status}; retrying"
    else:
        text = f"activation delayed ({node.last_error}); retrying"
    return Answer(node.sn, "pending", retry_in=math.ceil(delay), message=text)


def rejected(node: Node) -> Answer:
    return Answer(
        node.sn,
        "rejected",
        reason=node.reason,
        http_status=node.http_status,
        message=node.last_error,
    )


BUSY_RETRY: Final = 30
"""retry_in told to a new node while max_pending nodes wait for Exosite."""


def busy(sn: str, max_pending: int) -> Answer:
    text = f"gatewayd has {max_pending} nodes waiting for Exosite; announce again later"
    return Answer(sn, "pending", retry_in=BUSY_RETRY, message=text)


def invalid(sn: str, message: str) -> Answer:
    return Answer(sn, "rejected", reason=Reason.INVALID_REQUEST, message=message)


# ------------------------------------------------------------ journal lines


def credentials_log(node: Node, kind: str) -> Log:
    return Log(kind, logging.INFO, f"credentials {kind}", node.sn, node.state, 200)


def pending_log(node: Node, delay: float) -> Log:
    text = f"activation failed ({node.last_error}); attempt {node.attempts}, next in {delay:.0f} s"
    return Log("pending", logging.WARNING, text, node.sn, node.state, node.http_status)


def rejected_log(node: Node) -> Log:
    if node.state is State.NEEDS_REENABLE:
        text = f"needs re-enabling: {node.last_error}"
        return Log("needs_reenable", logging.ERROR, text, node.sn, node.state, node.http_status)
    text = f"rejected: {node.reason} ({node.last_error})"
    return Log("rejected", logging.WARNING, text, node.sn, node.state, node.http_status)


def malformed_log(node: Node, problem: str) -> Log:
    text = (
        f"Exosite's answer was a success, but its body is not a CIK ({problem}): it is kept "
        "unverified in the keystore and never handed to the node"
    )
    return Log("cik_malformed", logging.ERROR, text, node.sn, node.state, 200)


def unreadable_log(node: Node, error: str) -> Log:
    text = f"its stored CIK cannot be read ({error}); the node is told to announce again later"
    return Log("cik_unreadable", logging.ERROR, text, node.sn, node.state)


def expiry_log(node: Node, hours: float) -> Log:
    text = (
        f"not activated {hours:.0f} h after it was first seen: its Exosite activation "
        "window has probably expired; re-enable the device in Portals"
    )
    return Log("expiry_warning", logging.WARNING, text, node.sn, node.state)
