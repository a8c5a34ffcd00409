"""The operator's commands to the engine (``gatewayctl republish``, ``retry``, ``forget``,
``rotate``): the trigger of each, and the words of the journal and of the operator's
answer. Whether a command may act is the machine's (:func:`gatewayd.core.transitions.refusal`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Log, Result
from gatewayd.core.effects import forgotten
from gatewayd.core.events import Forget, Republish, Retry, Rotate
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import Trigger

Command = Republish | Retry | Forget | Rotate
TRIGGERS: Final[Mapping[type[Command], Trigger]] = {
    Republish: Trigger.REPUBLISH,
    Retry: Trigger.RETRY,
    Forget: Trigger.FORGET,
    Rotate: Trigger.ROTATE,
}


def said(trigger: Trigger, node: Node) -> list[Log]:
    """The journal's line about the command, before it acts (forget logs what it deleted)."""
    if trigger is Trigger.FORGET:
        return []
    return [Log("operator", logging.INFO, _SAID[trigger], node.sn, node.state)]


def answer(trigger: Trigger, before: Node, after: Node | None) -> list[Result]:
    """The operator's answer once the command acted on ``before`` (a republish is answered
    once the keystore was read: :func:`republished`)."""
    sn = before.sn
    if trigger is Trigger.RETRY:
        state = None if after is None else after.state
        done = "activation requested" if state is State.ACTIVATING else "queued"
        return [Result(ok=True, message=f"{sn}: {done} (was {before.state})")]
    if trigger is Trigger.FORGET:
        text = f"{sn}: forgotten ({forgotten(before)}; it was {before.state})"
        return [Result(ok=True, message=text)]
    if trigger is Trigger.ROTATE:
        text = f"{sn}: rotation started: re-enabling it at Exosite; the node gets its new CIK next"
        return [Result(ok=True, message=text)]
    return []


def republished(sn: str, cik: Secret | None, error: str | None) -> Result:
    """The operator's answer to a republish, once the keyring was read for it."""
    text = "credentials published again" if cik is not None else error or replies.CIK_MISSING
    return Result(ok=cik is not None, message=f"{sn}: {text}")


_SAID: Final = {
    Trigger.RETRY: "operator asked to retry now",
    Trigger.REPUBLISH: "republishing",
    Trigger.ROTATE: "operator asked to rotate the CIK",
}
