"""``gatewayctl import`` while gatewayd runs: a bundle's entries, opened by gatewayctl
(the passphrase never reaches the daemon), come over the control socket a part at a
time, and each is handed to the engine with the CIK the keystore holds for its serial
now and the CIKs retired for it: it decides what becomes of the entry by the rules an
import with gatewayd stopped follows too (:func:`gatewayd.core.imports.decide`).

Before an entry is handed over, or left as it is, the CIKs the bundle lists as retired
for its serial are kept with the gateway's, on disk; before one that replaces a stored
CIK (``--prefer-bundle``) is, the stored CIK is retired here, on disk; one that cannot
be is not replaced. The answer counts the entries imported, already held, kept as
stored and refused, and comes once what the part wrote is durable: its CIKs flushed,
then its records committed and flushed.
"""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.core import imports
from gatewayd.core.actions import LookupCik, Result
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, node_of, retired_of
from gatewayd.core.errors import KeystoreError
from gatewayd.core.events import Event, Imported
from gatewayd.core.imports import Answer
from gatewayd.core.retired import REPLACED, Retired, retired_ciks
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor

_REFUSED = "the keystore refuses it; see the journal"


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
    counts = dict.fromkeys(Answer, 0)
    for made in request.entries:
        try:
            event, retired = _event(made, engine, executor, prefer_bundle=request.prefer_bundle)
        except EntryError as exc:
            problems.append(str(exc))
            counts[Answer.REFUSED] += 1
            continue
        refusal = engine.import_refusal(event)
        if imports.answer_of(refusal) in {Answer.IMPORTED, Answer.UNCHANGED}:
            refusal = _retire(executor, engine, event, retired) or refusal
        kind = imports.answer_of(refusal)
        counts[kind] += 1
        if kind is Answer.IMPORTED:
            handle(event)
            imported.append(event.node.sn)
        elif kind is not Answer.UNCHANGED and refusal is not None:
            problems.append(refusal.message)
    executor.results.clear()

    def reply() -> None:
        unstored = [sn for sn in imported if sn in executor.held]
        said = problems + [f"{sn}: its CIK is not stored yet ({_REFUSED})" for sn in unstored]
        if executor.state_failing:
            said.append("the state database refuses writes: records may be missing")
        request.answer(
            {
                "ok": not said,
                "message": (
                    f"{counts[Answer.IMPORTED]} imported, {counts[Answer.UNCHANGED]} already "
                    f"held, {counts[Answer.KEPT]} kept as stored, {counts[Answer.REFUSED]} refused"
                ),
                **{one.value: count for one, count in counts.items()},
                "problems": said,
            }
        )

    executor.batches.after_writes(reply)


def _event(
    made: object, engine: Engine, executor: Executor, *, prefer_bundle: bool
) -> tuple[Imported, tuple[Retired, ...]]:
    """The engine's event for one entry, with the CIKs stored and retired here for its
    serial, and the CIKs the entry lists as retired; EntryError, saying why, for one the
    daemon cannot hand over now."""
    try:
        node, cik = node_of(made)
        retired = retired_of(made)
    except EntryError as exc:
        raise EntryError(f"not imported: {exc}") from None
    sn = node.sn
    current = engine.node(sn) or node
    looked_up = executor.lookup(LookupCik(sn, current.vendor, current.model))
    refusal = looked_up.error
    here: tuple[Retired, ...] = ()
    if sn in executor.held:
        refusal = f"a CIK of it is not stored yet ({_REFUSED}); import it again later"
    elif executor.batches.waiting(sn):
        refusal = "a write about it is under way; import it again later"
    elif refusal is None:
        try:
            here = executor.keystore.retired(current.vendor, current.model, sn)
        except KeystoreError as exc:
            refusal = f"cannot read the keyring: {exc}"
    if refusal is not None:
        raise EntryError(f"{sn}: not imported: {refusal}")
    event = Imported(node, cik, looked_up.cik, prefer_bundle, retired_ciks(here))
    return event, retired


def _retire(
    executor: Executor, engine: Engine, event: Imported, retired: tuple[Retired, ...]
) -> Result | None:
    """Keep the CIKs the entry lists as retired, then retire the stored CIK it replaces;
    an answer for the operator if they cannot be."""
    sn = event.node.sn
    current = engine.node(sn) or event.node
    keystore = executor.keystore
    try:
        keystore.add_retired(current.vendor, current.model, sn, retired)
    except KeystoreError as exc:
        return Result(ok=False, message=f"{sn}: {imports.UNKEPT}: {exc}")
    try:
        if imports.replaces(event):
            keystore.retire(current.vendor, current.model, sn, why=REPLACED)
    except KeystoreError as exc:
        return Result(ok=False, message=f"{sn}: {imports.UNRETIRED}: {exc}")
    return None
