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

from gatewayd.core.actions import Action, Log, Result
from gatewayd.core.effects import forgotten
from gatewayd.core.events import Forget, Republish, Retry
from gatewayd.core.model import Node, State
from gatewayd.core.transitions import Trigger, refused

TRIGGERS: Final[Mapping[type[Republish | Retry | Forget], Trigger]] = {
    Republish: Trigger.REPUBLISH,
    Retry: Trigger.RETRY,
    Forget: Trigger.FORGET,
}


def carry_out(
    command: Republish | Retry | Forget,
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
        text = "operator asked to retry now" if trigger is Trigger.RETRY else "republishing"
        actions.append(Log("operator", logging.INFO, text, sn, node.state))
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
    return actions
