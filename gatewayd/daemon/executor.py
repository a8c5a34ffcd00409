"""Carries out the engine's actions, in order, on the daemon's main thread.

What an action comes to that the engine must hear of (a CIK read from the
keystore, a request not sent because its record could not be saved) is an
event left in :attr:`Executor.followups`, for the daemon to hand to the engine
next: the executor never calls the engine.

A CIK is stored, and a write-ahead record saved, before anything that depends
on it: what follows them in a list of actions waits for the batch that makes
them durable (:mod:`gatewayd.daemon.batches`, :mod:`gatewayd.daemon.writer`).
A CIK the keystore does not take is held in memory (:mod:`gatewayd.daemon.held`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from gatewayd.adapters import logs, redaction
from gatewayd.core import protocol
from gatewayd.core.actions import (
    Action,
    Activate,
    CheckCik,
    DeleteNode,
    KeepRetired,
    Log,
    LookupCik,
    Publish,
    Reenable,
    Result,
    RetireCik,
    SaveNode,
    StoreCik,
)
from gatewayd.core.errors import KeystoreError, StateError
from gatewayd.core.events import CikLookedUp, RequestUnsent, RetiredKept
from gatewayd.core.model import Node, State
from gatewayd.core.retired import REPLACED, Retired, retired_ciks
from gatewayd.core.secret import Secret
from gatewayd.daemon.batches import Batch, Batches, subject
from gatewayd.daemon.held import Held

if TYPE_CHECKING:
    from gatewayd.adapters.keystore import Keystore
    from gatewayd.adapters.statedb import StateDB
    from gatewayd.daemon.writer import Flushed

log = logging.getLogger(__name__)

FollowUp = CikLookedUp | RequestUnsent | RetiredKept
"""An event for the engine that carrying out an action gave."""


class Requests(Protocol):
    """Exosite, as the executor sends to it (:class:`gatewayd.adapters.exosite.ExositeClient`)."""

    def submit(self, sn: str, vendor: str, model: str) -> None: ...
    def check(self, sn: str, model: str, cik: Secret, *, owner: bool) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class Publisher(Protocol):
    """The broker, as the executor publishes to it (:class:`gatewayd.adapters.mqtt.MqttLink`)."""

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, correlation: bytes | None = None
    ) -> bool: ...


class Executor:
    def __init__(
        self,
        keystore: Keystore,
        state: StateDB,
        exosite: Requests,
        link: Publisher,
        topics: protocol.Topics,
        reenable: Callable[[Reenable], None],
        writer: Callable[[int, Sequence[StoreCik]], None],
        emit: Callable[[Log], None] = logs.emit,
    ) -> None:
        """``emit`` writes the engine's journal lines (gatewayctl writes them to the journal
        itself)."""
        self._keystore = keystore
        self._state = state
        self._exosite = exosite
        self._link = link
        self._topics = topics
        self._reenable = reenable
        self._emit = emit
        self.outstanding = 0
        """Requests (activations and re-enables) sent and not answered yet."""
        self.held = Held(exosite.pause, exosite.resume)
        self.batches = Batches(state, writer)
        self.state_failing = False
        """The last write to the state database failed: no request is sent meanwhile."""
        self.state_failures = 0
        """Writes to the state database that failed, ever."""
        self.results: list[Result] = []
        """What the operator's commands came to, for the control channel to collect."""
        self.followups: list[FollowUp] = []
        """Events for the engine that carrying out actions gave, in order."""
        self._unretired: dict[str, str] = {}
        """Nodes whose refused CIK could not be retired: their next request is not sent."""

    def take_results(self) -> list[Result]:
        """What the operator's commands came to since last asked, in order."""
        results, self.results = self.results, []
        return results

    def writing(self, sn: str) -> str | None:
        """Why ``sn`` cannot be acted on for the operator now (a write about it must be
        durable first), or None."""
        if sn in self.held:
            return "its CIK is not stored yet (the keyring refuses it); see the journal"
        if self.batches.waiting(sn):
            return "a write about it is under way"
        return None

    def after_writes(self, done: Callable[[], None]) -> None:
        """Call ``done`` once what was written so far is durable."""
        self.batches.after_writes(done)

    @property
    def busy(self) -> bool:
        """Something waits for the disk, is being flushed, or is held in memory."""
        return self.batches.busy or bool(self.held)

    def run(
        self,
        actions: Sequence[Action],
        done: Callable[[], None] | None = None,
        unsaved: Mapping[str, str] | None = None,
    ) -> None:
        """Carry out ``actions`` in order, up to one that must wait for the disk: it and
        the rest wait in the gathering batch. ``done`` is called once all are carried
        out. ``unsaved``: nodes whose write-ahead records were lost, and why (their
        requests are not sent)."""
        saved: dict[str, str | None] = dict(unsaved or {})
        """How the last save of each node's record went: None if done, else the error,
        and then the request that follows it is not sent."""
        wrote: set[str] = set()
        for i, action in enumerate(actions):
            sn = subject(action)
            if wrote or (sn is not None and self.batches.waiting(sn)):
                # what an operator's command came to is told at once, what it does in order
                rest = [a for a in actions[i:] if not isinstance(a, Result)]
                self.results += [a for a in actions[i:] if isinstance(a, Result)]
                self.batches.defer(rest, done, frozenset(wrote))
                return
            if self._do(action, saved):
                wrote.add(sn or "")
        if done is not None:
            done()

    def _do(self, action: Action, saved: dict[str, str | None]) -> bool:  # noqa: C901 (per kind)
        """Carry out one action; True if it wrote what must be durable before the next."""
        match action:
            case StoreCik():
                return self._store(action)
            case SaveNode(node=node):
                return self._saved(node, saved)
            case Activate() | Reenable():
                self._request(action, saved.pop(action.sn, None))
            case LookupCik():
                self.followups.append(self.lookup(action))
            case CheckCik():
                self._check(action)
            case RetireCik():
                self._retire(action, saved.get(action.sn))
            case KeepRetired():
                self.followups.append(self._keep_retired(action))
            case Publish():
                self._publish(action)
            case Log():
                self._emit(action)
            case DeleteNode() | Result():
                self._command(action)
        return False

    def _saved(self, node: Node, saved: dict[str, str | None]) -> bool:
        """Save ``node``'s record; True if it must be durable before what follows."""
        saved[node.sn] = error = self._save(node)
        if node.state is State.ACTIVATED:
            # an activated record need not wait for the disk: its CIK is stored, and a
            # record lost to a power cut is rebuilt from it; no request follows it
            self._unretired.pop(node.sn, None)
            return False
        if error is None:
            self.batches.wrote(node.sn)
        return error is None

    def cut(self) -> None:
        """Between two items of the inbox: commit the records written, and hand what
        waits for the disk to the writer, unless it is busy."""
        ready, failure = self.batches.cut()
        if failure is not None:
            self._state_failed(failure)
        if ready is not None:
            self._resume(ready, None)

    def flushed(self, item: Flushed) -> None:
        """The writer is done with a batch: what waited for it runs now."""
        batch = self.batches.flushed(item.number)
        for record in self.held.settled(item.stored, item.failed):
            self._save(record)
        error = batch.error or item.error
        if error is not None and batch.durable:
            self._state_failed(StateError(error))
        elif batch.durable:
            self._state_ok()
        self._resume(batch, error)

    def _resume(self, batch: Batch, error: str | None) -> None:
        with self.batches.resuming():
            for later in batch.later:
                unsaved = dict.fromkeys(later.wrote, error) if error is not None else None
                self.run(later.actions, later.done, unsaved)

    def retry_stores(self, now: float) -> None:
        """Store the held CIKs again, once that is due."""
        for action in self.held.retry(now):
            self.batches.store(action)

    def _request(self, action: Activate | Reenable, unsaved: str | None) -> None:
        """Send ``action``, unless the record written ahead of it failed to save (``unsaved``
        says why): then it is not sent, and the engine is told."""
        unretired = self._unretired.pop(action.sn, None)
        if unsaved is not None or unretired is not None:
            self.followups.append(RequestUnsent(action.sn, unsaved or unretired or ""))
            return
        self.outstanding += 1
        if isinstance(action, Activate):
            self._exosite.submit(action.sn, action.vendor, action.model)
        else:
            self._reenable(action)

    def answered(self) -> None:
        self.outstanding -= 1

    # ----------------------------------------------------------------- keystore

    def _store(self, action: StoreCik) -> bool:
        """Hand the CIK to the gathering batch (True); while CIKs are held, hold it behind
        them instead (False: its node is answered with it, from memory)."""
        redaction.remember_cik(action.cik)
        if self.held:
            self.held.queue(action)
            return False
        self.batches.store(action)
        return True

    def _check(self, action: CheckCik) -> None:
        """Ask Exosite about a CIK."""
        redaction.remember_cik(action.cik, checked=True)
        self.outstanding += 1
        self._exosite.check(action.sn, action.model, action.cik, owner=action.owner)

    def _retire(self, action: RetireCik, unsaved: str | None) -> None:
        """Move a CIK apart, on disk before the request that follows is sent (else a restart
        would find it and hand it out again): that request is not sent if it cannot be.
        Not when the record written ahead of it (saying the CIK is refused) failed to save
        (``unsaved``): the CIK is then kept until that record is saved."""
        if unsaved is not None:
            return
        try:
            if action.cik is None:
                self._keystore.retire(action.vendor, action.model, action.sn, why=action.why)
            else:  # one replaced already: it joins the retired ones
                retired = Retired(action.cik, time.time(), action.why)
                self._keystore.add_retired(action.vendor, action.model, action.sn, [retired])
        except KeystoreError as exc:
            log.error(  # noqa: TRY400 (the message is the whole story)
                "node %s: cannot retire its refused CIK: %s",
                action.sn,
                exc,
                extra=logs.about(action.sn),
            )
            self._unretired[action.sn] = f"cannot retire its refused CIK: {exc}"

    def lookup(self, action: LookupCik) -> CikLookedUp:
        held = self.held.ciks.get(action.sn)
        if held is not None and not held.unverified and not action.retired_ciks:
            return CikLookedUp(action.sn, held.cik)
        vendor, model, sn = action.vendor, action.model, action.sn
        every: frozenset[Secret] = frozenset()
        try:
            cik = self._keystore.load(vendor, model, sn)
            if action.retired_ciks:
                every = retired_ciks(self._keystore.retired(vendor, model, sn))
                retired = cik is None and bool(every)
            else:
                retired = cik is None and self._keystore.has_retired(vendor, model, sn)
        except KeystoreError as exc:
            return CikLookedUp(sn, None, error=f"cannot read the keyring: {exc}")
        if cik is not None:
            redaction.remember_cik(cik)
        return CikLookedUp(sn, cik, retired=retired, retired_ciks=every)

    def _keep_retired(self, action: KeepRetired) -> RetiredKept:
        """Keep a bundle's retired CIKs with the serial's, then retire the stored CIK the
        entry replaces, each on disk before the CIK that replaces it is stored."""
        vendor, model, sn = action.vendor, action.model, action.sn
        try:
            self._keystore.add_retired(vendor, model, sn, action.retired)
        except KeystoreError as exc:
            return RetiredKept(sn, str(exc))
        try:
            if action.replace:
                self._keystore.retire(vendor, model, sn, why=REPLACED)
        except KeystoreError as exc:
            return RetiredKept(sn, str(exc), unretired=True)
        return RetiredKept(sn)

    # -------------------------------------------------------------- state, MQTT

    def _save(self, node: Node) -> str | None:
        """Write the node's record into the open transaction; None once done, else what
        went wrong."""
        sn = node.sn
        if sn in self.held:
            self.held.records[sn] = node
            log.debug(
                "node %s: record kept as written ahead until its CIK is stored",
                sn,
                extra=logs.about(sn),
            )
            return None
        try:
            self._state.begin()
            self._state.save(node)
        except StateError as exc:
            self._state_failed(exc)
            return str(exc)
        return None

    def _state_failed(self, exc: StateError) -> None:
        self.state_failures += 1
        if self.state_failing:
            log.debug("%s", exc)
            return
        self.state_failing = True
        log.critical(
            "%s; no activation or re-enable request is sent until the state database takes "
            "writes again: nodes wait as pending and are retried",
            exc,
        )

    def _state_ok(self) -> None:
        if self.state_failing:
            self.state_failing = False
            log.warning("the state database takes writes again; requests resume")

    def _command(self, action: DeleteNode | Result) -> None:
        """An operator's command: the outcome is kept for the control channel."""
        if isinstance(action, Result):
            self.results.append(action)
            return
        # the CIK first, then the record (a record left without its CIK is told rejected)
        try:
            self._keystore.delete(action.vendor, action.model, action.sn)
            self._state.begin()
            self._state.delete(action.sn)
        except (KeystoreError, StateError) as exc:
            log.error(  # noqa: TRY400 (the message is the whole story)
                "node %s: cannot forget it completely: %s",
                action.sn,
                exc,
                extra=logs.about(action.sn),
            )
            self.results.append(Result(ok=False, message=f"{action.sn}: {exc}"))

    def _publish(self, action: Publish) -> None:
        answer = action.answer
        payload = protocol.encode_answer(answer)
        self._link.publish(self._topics.credentials(answer.sn), payload)
        for target in action.responses:
            self._link.publish(target.topic, payload, correlation=target.correlation)
