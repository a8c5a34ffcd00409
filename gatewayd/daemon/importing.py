"""``gatewayctl import`` while gatewayd runs: a bundle's entries, opened by gatewayctl
(the passphrase never reaches the daemon), come over the control socket a part at a
time, and each is handed to the engine (:mod:`gatewayd.core.imports`) with the CIK
the keystore holds for its serial now.

Before an entry is handed over, or left as it is, the CIKs the bundle lists as retired
for its serial are kept with the gateway's, on disk; before one that replaces a stored
CIK (``--prefer-bundle``) is, the stored CIK is retired here, on disk; one that cannot
be is not replaced. An entry whose CIK is any the gateway has retired is refused: a CIK
Exosite refused, one rotated away or one an import replaced is never taken back. The
answer comes once what the part wrote is durable: its CIKs flushed, then its records
committed and flushed.
"""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.core import imports
from gatewayd.core.actions import LookupCik, Result
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, node_of, retired_of
from gatewayd.core.errors import KeystoreError
from gatewayd.core.events import Event, Imported
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
    unchanged = 0
    for made in request.entries:
        try:
            event, retired = _event(made, engine, executor, prefer_bundle=request.prefer_bundle)
        except EntryError as exc:
            problems.append(str(exc))
            continue
        refusal = engine.import_refusal(event)
        if refusal is None or refusal.ok:
            refusal = _retire(executor, engine, event, retired) or refusal
        if refusal is None:
            handle(event)
            imported.append(event.node.sn)
        elif refusal.ok:
            unchanged += 1
        else:
            problems.append(refusal.message)
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

    executor.batches.after_writes(answer)


def _event(
    made: object, engine: Engine, executor: Executor, *, prefer_bundle: bool
) -> tuple[Imported, tuple[Retired, ...]]:
    """The engine's event for one entry, and the CIKs it lists as retired; EntryError,
    saying why, for one not imported."""
    try:
        node, cik = node_of(made)
        retired = retired_of(made)
    except EntryError as exc:
        raise EntryError(f"not imported: {exc}") from None
    sn = node.sn
    current = engine.node(sn) or node
    looked_up = executor.lookup(LookupCik(sn, current.vendor, current.model))
    refusal = looked_up.error
    if sn in executor.held:
        refusal = f"a CIK of it is not stored yet ({_REFUSED}); import it again later"
    elif executor.batches.waiting(sn):
        refusal = "a write about it is under way; import it again later"
    elif refusal is None and cik is not None:
        try:
            here = executor.keystore.retired(current.vendor, current.model, sn)
        except KeystoreError as exc:
            refusal = f"cannot read the keyring: {exc}"
        else:
            if cik in retired_ciks(here):
                raise EntryError(f"{sn}: {imports.RETIRED}")
    if refusal is not None:
        raise EntryError(f"{sn}: not imported: {refusal}")
    return Imported(node, cik, looked_up.cik, prefer_bundle), retired


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
