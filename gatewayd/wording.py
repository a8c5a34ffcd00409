"""What nodes and operators are told: the text of answers and journal lines.

Kept apart from the engine so that its file holds decisions only. No text
here ever includes a CIK.
"""

from __future__ import annotations

from typing import Final

from gatewayd.events import Node, Reason

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
CIK_MALFORMED: Final = "Exosite's 200 body is not 40 printable characters; stored as received"


def rejection(reason: Reason, http_status: int) -> str:
    return f"{REASON_TEXT[reason]} (HTTP {http_status})"


def pending_answer(node: Node) -> str:
    if node.http_status is not None:
        return f"Exosite answered HTTP {node.http_status}; retrying"
    return f"activation delayed ({node.last_error}); retrying"


def pending_log(node: Node, delay: float) -> str:
    return f"activation failed ({node.last_error}); attempt {node.attempts}, next in {delay:.0f} s"


def rejected_log(node: Node) -> str:
    return f"rejected: {node.reason} ({node.last_error})"


def expiry_log(hours: float) -> str:
    return (
        f"not activated {hours:.0f} h after it was first seen: its Exosite activation "
        "window has probably expired; re-enable the device in Portals"
    )
