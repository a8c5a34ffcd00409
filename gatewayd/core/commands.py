"""The operator's commands to the engine: ``gatewayctl republish``, ``retry``, ``forget``.

Each is the row of its trigger for the node's state, applied by the engine's
``fire``, with a line for the journal before it and a :class:`Result` for the
operator after it; or, where the row does not apply, a refusal that says why
(:func:`gatewayd.core.transitions.refused`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action, Log, Result
from gatewayd.core.effects import forgotten
from gatewayd.core.events import Forget, Republish, Retry, Rotate
from gatewayd.core.model import Node, State
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import TRANSITIONS, Trigger

Command = Republish | Retry | Forget | Rotate
TRIGGERS: Final[Mapping[type[Command], Trigger]] = {
    Republish: Trigger.REPUBLISH,
    Retry: Trigger.RETRY,
    Forget: Trigger.FORGET,
    Rotate: Trigger.ROTATE,
}


def refused(node: Node | None, trigger: Trigger, *, reenabling: bool = False) -> str | None:
    """Why an operator's command cannot act on ``node`` now, or None if it can;
    ``reenabling``: gatewayd is re-enabling its serial."""
    in_flight = "a request about it is in flight; try again once it is answered"
    if node is None:
        return "no such node"
    if (node.state, trigger) in TRANSITIONS:
        if not reenabling:
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
    if node.state is State.ACTIVATED:
        return "already activated: Exosite would refuse another activation"
    return f"a request about it is in flight (it is {node.state})"


def carry_out(
    command: Command,
    node: Node | None,
    fire: Callable[[str, Trigger], list[Action]],
    after: Callable[[str], Node | None],
    republishing: set[str],
    *,
    reenabling: bool,
) -> list[Action]:
    """Done, or refused saying why. ``after`` reads the node's record once the row is
    applied; ``republishing`` holds the serials whose keyring answer tells the operator
    how a republish went; ``reenabling``: gatewayd re-enables the node's serial."""
    sn = command.sn
    trigger = TRIGGERS[type(command)]
    refusal = refused(node, trigger, reenabling=reenabling)
    if node is None or refusal is not None:
        return [Result(ok=False, message=f"{sn}: {refusal}")]
    actions: list[Action] = []
    if trigger is not Trigger.FORGET:
        actions.append(Log("operator", logging.INFO, _SAID[trigger], sn, node.state))
    if trigger is Trigger.REPUBLISH:
        republishing.add(sn)
    actions += fire(sn, trigger)
    if trigger is Trigger.RETRY:
        record = after(sn)
        state = None if record is None else record.state
        done = "activation requested" if state is State.ACTIVATING else "queued"
        return [*actions, Result(ok=True, message=f"{sn}: {done} (was {node.state})")]
    if trigger is Trigger.FORGET:
        said = f"{sn}: forgotten ({forgotten(node)}; it was {node.state})"
        return [*actions, Result(ok=True, message=said)]
    if trigger is Trigger.ROTATE:
        said = f"{sn}: rotation started: re-enabling it at Exosite; the node gets its new CIK next"
        return [*actions, Result(ok=True, message=said)]
    return actions


def republished(
    republishing: set[str], sn: str, cik: Secret | None, error: str | None
) -> list[Action]:
    """The operator's answer to a republish, once the keyring was read for it."""
    if sn not in republishing:
        return []
    republishing.discard(sn)
    said = "credentials published again" if cik is not None else error or replies.CIK_MISSING
    return [Result(ok=cik is not None, message=f"{sn}: {said}")]


_SAID: Final = {
    Trigger.RETRY: "operator asked to retry now",
    Trigger.REPUBLISH: "republishing",
    Trigger.ROTATE: "operator asked to rotate the CIK",
}
