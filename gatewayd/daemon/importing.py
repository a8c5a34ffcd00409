"""``gatewayctl import``: a bundle's entries handed to the engine as events, by the running
gatewayd or, with gatewayd stopped, by gatewayctl running the same engine and executor
over the state folder.

Either way each entry is an :class:`~gatewayd.core.events.Imported` event; the engine
decides what becomes of it (:func:`gatewayd.core.transitions.imported_found`) and the
executor carries out the keystore's part (reading the stored and retired CIKs, keeping
the bundle's retired CIKs, retiring a CIK replaced, storing the bundle's). The answer
counts the entries imported, already held, kept as stored and refused, and comes once
what was written is durable: the CIKs flushed, then the records committed and flushed.

While gatewayd runs, gatewayctl opens the bundle (the passphrase never reaches the
daemon) and sends its entries over the control socket a part at a time (:func:`take`).
While it is stopped, gatewayctl runs :func:`stopped`: the engine starts from the
state folder's records as gatewayd does, but stopped, so nothing a record left
unfinished is started (gatewayd finishes it at its next start).
"""

from __future__ import annotations

import dataclasses
import queue
import random
import time
from collections.abc import Callable, Iterable
from typing import Final

from gatewayd.adapters import logs
from gatewayd.config.schema import Config
from gatewayd.core import imports, protocol
from gatewayd.core.actions import Action, Log, Reenable, Result
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, node_of, retired_of
from gatewayd.core.events import Drain, Event, Imported
from gatewayd.core.imports import Answer
from gatewayd.core.secret import Secret
from gatewayd.daemon import preflight
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor
from gatewayd.daemon.wiring import engine_settings, open_keystore, writer
from gatewayd.daemon.writer import Flushed

_REFUSED = "the keystore refuses it; see the journal"
STATE_REFUSED: Final = "records may be missing; import the bundle again once it takes them"
"""What an import says when the state database refused a write (gatewayd stopped)."""
TWICE: Final = "not imported: an earlier entry of the bundle for it is imported"
"""The answer for a second entry of a serial whose first is taken (gatewayd stopped)."""
FLUSH_WAIT: Final = 600.0
"""How long gatewayctl waits for one flush of the state folder."""


@dataclasses.dataclass(slots=True)
class Tally:
    """What became of a bundle's entries: how many of each answer, the problems in words,
    and the serials imported."""

    counts: dict[Answer, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(Answer, 0))
    problems: list[str] = dataclasses.field(default_factory=list)
    imported: list[str] = dataclasses.field(default_factory=list)

    def add(self, sn: str, results: Iterable[Result]) -> Answer:
        """Count the engine's answer on ``sn``'s entry (a refusal if there is none)."""
        decision = next((r for r in results if isinstance(r, imports.Decision)), None)
        answer = Answer.REFUSED if decision is None else decision.answer
        self.counts[answer] += 1
        if answer is Answer.IMPORTED:
            self.imported.append(sn)
        elif answer is not Answer.UNCHANGED:
            self.problems.append(f"{sn}: not imported" if decision is None else decision.message)
        return answer

    def refuse(self, problem: str) -> None:
        self.counts[Answer.REFUSED] += 1
        self.problems.append(problem)

    def counted(self) -> dict[str, int]:
        return {one.value: count for one, count in self.counts.items()}


def _entry(made: object, *, prefer_bundle: bool) -> Imported:
    """The engine's event for one entry; EntryError, saying why, for one that is no entry."""
    try:
        node, cik = node_of(made)
        retired = retired_of(made)
    except EntryError as exc:
        raise EntryError(f"not imported: {exc}") from None
    return Imported(node, cik, prefer_bundle, retired)


def take(
    request: Request,
    executor: Executor,
    handle: Callable[[Event], None],
    *,
    stopping: bool,
) -> None:
    """Hand the request's entries to the running engine; answer it once they are durable."""
    if stopping:
        request.answer({"ok": False, "message": "gatewayd is stopping: nothing imported"})
        return
    tally = Tally()
    for made in request.entries:
        try:
            event = _entry(made, prefer_bundle=request.prefer_bundle)
        except EntryError as exc:
            tally.refuse(str(exc))
            continue
        sn = event.node.sn
        busy = executor.writing(sn)
        if busy is not None:
            tally.refuse(f"{sn}: not imported: {busy}; import it again later")
            continue
        handle(event)
        tally.add(sn, executor.take_results())

    def reply() -> None:
        unstored = [sn for sn in tally.imported if sn in executor.held]
        said = tally.problems + [f"{sn}: its CIK is not stored yet ({_REFUSED})" for sn in unstored]
        if executor.state_failing:
            said.append("the state database refuses writes: records may be missing")
        counts = tally.counts
        request.answer(
            {
                "ok": not said,
                "message": (
                    f"{counts[Answer.IMPORTED]} imported, {counts[Answer.UNCHANGED]} already "
                    f"held, {counts[Answer.KEPT]} kept as stored, {counts[Answer.REFUSED]} refused"
                ),
                **tally.counted(),
                "problems": said,
            }
        )

    executor.after_writes(reply)


class _Unlinked:
    """Exosite and the broker while gatewayd is stopped: an import sends nothing to either
    (the engine stops, so no request is made; a node waiting for its credentials is not
    listening)."""

    def submit(self, sn: str, vendor: str, model: str) -> None:  # noqa: ARG002 (nothing is sent)
        raise RuntimeError(f"{sn}: no request is sent while gatewayd is stopped")

    def check(self, sn: str, model: str, cik: Secret, *, owner: bool) -> None:  # noqa: ARG002
        raise RuntimeError(f"{sn}: no check is sent while gatewayd is stopped")

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def publish(
        self,
        topic: str,  # noqa: ARG002 (nothing is published)
        payload: bytes,  # noqa: ARG002
        *,
        retain: bool = False,  # noqa: ARG002
        correlation: bytes | None = None,  # noqa: ARG002
    ) -> bool:
        return False


def _no_reenable(action: Reenable) -> None:
    raise RuntimeError(f"{action.sn}: no re-enable is sent while gatewayd is stopped")


def _to_journal(event: Log) -> None:
    logs.to_journal([event], "gatewayctl")


def stopped(config: Config, entries: list[object], *, prefer_bundle: bool) -> Tally:
    """Import ``entries`` into the state folder of a stopped gatewayd (the caller holds
    the folder's lock): the engine and the executor gatewayd runs, started from the
    folder's records, stopped; the CIKs flushed, then the records."""
    keystore = open_keystore(config)
    keystore.recover()  # as gatewayd starts: a write a stop interrupted is completed first
    preflight.check_keystore(keystore)
    state = preflight.open_state(config.gateway.state_dir)
    flushed: queue.SimpleQueue[Flushed] = queue.SimpleQueue()
    flusher = writer(config, keystore, state, flushed.put)
    unlinked = _Unlinked()
    topics = protocol.Topics(config.mqtt.topic_prefix, config.gateway.id)
    executor = Executor(
        keystore, state, unlinked, unlinked, topics, _no_reenable, flusher.submit, _to_journal
    )
    settings = engine_settings(config, vendor_token=False)
    engine = Engine(settings, state.all(), time.monotonic, random.uniform, time.time)
    engine.handle(Drain())  # stopped: what a record left unfinished waits for gatewayd

    def carry_out(actions: list[Action]) -> None:
        executor.run(actions)
        while executor.followups:
            executor.run(engine.handle(executor.followups.pop(0)))

    tally = Tally()
    taken: set[str] = set()
    try:
        for made in entries:
            event = _entry(made, prefer_bundle=prefer_bundle)
            sn = event.node.sn
            if sn in taken:
                tally.refuse(f"{sn}: {TWICE}")
                continue
            carry_out(engine.handle(event))
            if tally.add(sn, executor.take_results()) is Answer.IMPORTED:
                taken.add(sn)
        while executor.batches.busy:
            executor.cut()
            if executor.batches.flushing is not None:
                executor.flushed(flushed.get(timeout=FLUSH_WAIT))
                while executor.followups:
                    carry_out([])
    finally:
        flusher.close(timeout=FLUSH_WAIT)
        state.close()
    unstored = [sn for sn in tally.imported if sn in executor.held]
    tally.problems += [f"{sn}: its CIK is not stored ({_REFUSED})" for sn in unstored]
    if executor.state_failures:
        tally.problems.append(f"the state database refused writes: {STATE_REFUSED}")
    return tally
