"""``gatewayctl import`` while gatewayd runs: a bundle's entries, opened by gatewayctl
(the passphrase never reaches the daemon), come over the control socket a part at a
time, and each is handed to the engine (:mod:`gatewayd.core.imports`) with the CIK
the keystore holds for its serial now.

The answer comes once what the part stored is durable: its CIKs and records flushed.
"""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.core import imports
from gatewayd.core.actions import LookupCik
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, node_of
from gatewayd.core.events import Event, Imported
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor


def take(
    request: Request,
    engine: Engine,
    executor: Executor,
    handle: Callable[[Event], None],
    *,
    stopping: bool,
) -> None:
    """Hand the request's entries to the engine; answer it once they are durable."""
    if stopping:
        request.answer({"ok": False, "message": "gatewayd is stopping: nothing imported"})
        return
    problems: list[str] = []
    imported: list[str] = []
    unchanged = 0
    for made in request.entries:
        try:
            event = _event(made, engine, executor, prefer_bundle=request.prefer_bundle)
        except EntryError as exc:
            problems.append(str(exc))
            continue
        executor.results.clear()
        handle(event)
        for result in executor.results:
            if not result.ok:
                problems.append(result.message)
            elif result.message.endswith(imports.UNCHANGED):
                unchanged += 1
            else:
                imported.append(event.node.sn)
    executor.results.clear()

    def answer() -> None:
        unstored = [sn for sn in imported if sn in executor.held]
        said = problems + [f"{sn}: its CIK is not stored yet ({_REFUSED})" for sn in unstored]
        if executor.state_failing:
            said.append("the state database refuses writes: records may be missing")
        request.answer(
            {
                "ok": not said,
                "message": f"{len(imported)} imported, {unchanged} already held",
                "imported": len(imported),
                "unchanged": unchanged,
                "problems": said,
            }
        )

    executor.after_writes(answer)


_REFUSED = "the keystore refuses it; see the journal"


def _event(made: object, engine: Engine, executor: Executor, *, prefer_bundle: bool) -> Imported:
    """The engine's event for one entry; EntryError, saying why, for one not imported."""
    try:
        node, cik = node_of(made)
    except EntryError as exc:
        raise EntryError(f"not imported: {exc}") from None
    sn = node.sn
    refusal = None
    if sn in executor.held:
        refusal = f"a CIK of it is not stored yet ({_REFUSED})"
    elif executor.batches.waiting(sn):
        refusal = "a write about it is under way"
    current = engine.node(sn) or node
    looked_up = executor.lookup(LookupCik(sn, current.vendor, current.model))
    refusal = refusal or looked_up.error
    if refusal is not None:
        raise EntryError(f"{sn}: not imported: {refusal}; import it again later")
    return Imported(node, cik, looked_up.cik, prefer_bundle)
