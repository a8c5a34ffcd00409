"""How a node's record changes when the engine moves it from one state to another.

The engine's table says which state comes next; this module fills in the
fields that go with it: timestamps, attempts and the next attempt, the reason
of a rejection, and the write-ahead of each request. Pure functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gatewayd.core import replies
from gatewayd.core.events import (
    Action,
    Failed,
    Issued,
    Node,
    Outcome,
    Reason,
    Refused,
    Settings,
    State,
    StoreCik,
)
from gatewayd.core.secret import Secret
from gatewayd.core.timers import backoff_ceiling
from gatewayd.core.transitions import Trigger

REFUSALS: Final[Mapping[int, Reason]] = {
    404: Reason.UNKNOWN_SERIAL,
    403: Reason.INVALID_VENDOR_MODEL,
    409: Reason.NOT_ACTIVATABLE,
}
"""Exosite's refusals by status; any other 4xx (but 429) is ``api_error``."""


def next_record(
    node: Node,
    target: State,
    outcome: Outcome | None,
    now: float,
    settings: Settings,
    uniform: Callable[[float, float], float],
) -> Node:
    changes: dict[str, object] = {"state": target}
    if target is State.ACTIVATING and (
        node.state is not State.ACTIVATING or node.request_started is None  # a new node
    ):
        changes |= _request(node, now, settings)
    elif target is State.ACTIVATED and node.state is not State.ACTIVATED:
        status = 200 if isinstance(outcome, Issued) else 409
        changes |= {"activated_at": now, "next_attempt": None, "reason": None}
        changes |= {"last_error": None, "http_status": status, "uncertain": False}
    elif target is State.NEEDS_REENABLE and isinstance(outcome, Issued):
        # a 2xx that is no CIK: Exosite may have issued one that never arrived whole
        text = replies.not_a_cik(node.sn, outcome.problem or "", auto=settings.auto_reenable)
        changes |= {"reason": Reason.NOT_ACTIVATABLE, "last_error": text, "http_status": 200}
        changes |= {"rejected_at": now, "next_attempt": None, "uncertain": True}
    elif target is State.NEEDS_REENABLE and node.state is not State.NEEDS_REENABLE:
        text = replies.CIK_LOST_AUTO if settings.auto_reenable else replies.cik_lost(node.sn)
        changes |= {"reason": Reason.NOT_ACTIVATABLE, "last_error": text, "http_status": 409}
        changes |= {"rejected_at": now, "next_attempt": None}
    elif target is State.NEEDS_REENABLE and isinstance(outcome, Failed):
        changes |= {
            "last_error": f"re-enabling failed ({outcome.error}); {replies.REENABLE_BY_HAND}"
        }
    elif target is State.REJECTED and node.state is not State.REJECTED:
        changes |= _rejection(outcome, node)
        changes |= {"rejected_at": now, "next_attempt": None, "uncertain": False}
    elif target is State.PENDING and isinstance(outcome, Failed):
        attempts = node.attempts + 1
        ceiling = backoff_ceiling(
            attempts, settings.backoff_base, settings.backoff_factor, settings.backoff_cap
        )
        changes |= {"attempts": attempts, "next_attempt": now + uniform(0.0, ceiling)}
        changes |= {"last_error": outcome.error, "http_status": outcome.http_status}
        changes |= {"uncertain": node.uncertain or outcome.maybe_delivered}
    return dataclasses.replace(node, **changes)  # type: ignore[arg-type]


def _request(node: Node, now: float, settings: Settings) -> dict[str, object]:
    """The write-ahead of a request about to be sent."""
    changes: dict[str, object] = {"request_started": now, "request_form": settings.api}
    if node.state in {State.REJECTED, State.NEEDS_REENABLE}:
        changes |= {"reason": None, "rejected_at": None, "attempts": 0}
    return changes


def _rejection(outcome: Outcome | None, node: Node) -> dict[str, object]:
    """The reason, message and status a node is rejected with."""
    if node.state is State.ACTIVATED:  # its stored CIK is gone
        reason, text, status = Reason.NOT_ACTIVATABLE, replies.CIK_MISSING, None
    else:
        status = outcome.http_status if isinstance(outcome, Refused) else 409
        reason = REFUSALS.get(status, Reason.API_ERROR)
        text = replies.rejection(reason, status)
    return {"reason": reason, "last_error": text, "http_status": status}


@dataclass(frozen=True, slots=True)
class Step:
    """One transition being applied: the node's new record and what caused it."""

    node: Node
    trigger: Trigger
    now: float
    cik: Secret | None = None
    outcome: Outcome | None = None


def store(step: Step) -> list[Action]:
    """The actions that keep an issued body: the store, and an error if it is no CIK."""
    node = step.node
    assert step.cik is not None  # noqa: S101 (ISSUED always carries the CIK)
    outcome = step.outcome
    if isinstance(outcome, Issued) and outcome.problem is not None:
        action = StoreCik(node.sn, node.vendor, node.model, step.cik, unverified=True)
        return [action, replies.malformed_log(node, outcome.problem)]
    return [StoreCik(node.sn, node.vendor, node.model, step.cik)]
