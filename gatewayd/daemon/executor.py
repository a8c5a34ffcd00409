"""Carries out the engine's actions, in order, on the daemon's main thread.

What an action comes to that the engine must hear of (a CIK read from the
keystore, a request not sent because its record could not be saved) is an
event left in :attr:`Executor.followups`, for the daemon to hand to the engine
next: the executor never calls the engine.

A CIK is written to the keystore before anything else happens to its node.
When the keystore cannot take it (disk full, read-only file system, a backend
error), the CIK is kept in memory and the node is still answered, a CRITICAL
line is logged, no new activation request starts, and the write is retried
until it succeeds; only then is the node's record saved as ``activated``, so
that a crash meanwhile leaves the write-ahead record that tells what was lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from gatewayd.adapters import logs
from gatewayd.core import protocol
from gatewayd.core.actions import (
    Action,
    Activate,
    DeleteNode,
    Log,
    LookupCik,
    Publish,
    Reenable,
    Result,
    SaveNode,
    StoreCik,
)
from gatewayd.core.errors import KeystoreError, StateError
from gatewayd.core.events import CikLookedUp, RequestUnsent
from gatewayd.core.model import Node, State
from gatewayd.core.timers import backoff_ceiling

if TYPE_CHECKING:
    from gatewayd.adapters.exosite import ExositeClient
    from gatewayd.adapters.keystore import Keystore
    from gatewayd.adapters.mqtt import MqttLink
    from gatewayd.adapters.state import StateDB

log = logging.getLogger(__name__)

STORE_RETRY_BASE: Final = 0.5
STORE_RETRY_CAP: Final = 30.0


class Executor:
    def __init__(
        self,
        keystore: Keystore,
        state: StateDB,
        exosite: ExositeClient,
        link: MqttLink,
        topics: protocol.Topics,
        reenable: Callable[[Reenable], None],
    ) -> None:
        self._keystore = keystore
        self._state = state
        self._exosite = exosite
        self._link = link
        self._topics = topics
        self._reenable = reenable
        self.outstanding = 0
        """Requests (activations and re-enables) sent and not answered yet."""
        self.unstored: dict[str, StoreCik] = {}
        """CIKs received that the keystore has not taken yet: they exist only here."""
        self.state_failing = False
        """The last write to the state database failed: no request is sent meanwhile."""
        self._store_failures = 0
        self._store_retry_at: float | None = None
        self._held: list[Activate | Reenable] | None = None
        self.results: list[Result] = []
        """What the operator's commands came to, for the control channel to collect."""
        self.followups: list[CikLookedUp | RequestUnsent] = []
        """Events for the engine that carrying out actions gave, in order."""
        self._deferred: dict[str, Node] = {}
        """The last record of each node whose CIK waits in memory: saved once it is stored."""

    def run(self, actions: Iterable[Action], stored: Callable[[], None] | None = None) -> bool:
        """Carry out ``actions`` in order; ``stored`` is called as soon as a CIK among them
        is in the keystore (not when it is only held in memory). True if it was called."""
        called = False
        saved: dict[str, str | None] = {}
        """How the last save of each node's record in this run went: None if done, else
        the error, and then the request that follows it is not sent."""
        for action in actions:
            match action:
                case StoreCik():
                    if self._store(action) and stored is not None and not called:
                        stored()
                        called = True
                case SaveNode(node=node):
                    saved[node.sn] = self._save(node)
                case Activate() | Reenable():
                    self._request(action, saved.pop(action.sn, None))
                case LookupCik():
                    self.followups.append(self._lookup(action))
                case Publish():
                    self._publish(action)
                case Log():
                    logs.emit(action)
                case DeleteNode() | Result():
                    self._command(action)
        return called

    @contextlib.contextmanager
    def requests_held(self) -> Iterator[None]:
        """Requests the block asks for are sent when it ends, in order: after what encloses
        it (a state transaction) has made their write-ahead records durable. A transaction
        that fails (StateError) sends none of them: their nodes wait as pending. A block
        left by another exception sends nothing either."""
        self._held = []
        try:
            yield
        except StateError as exc:
            # the transaction is lost: none of its requests has a record on disk
            held, self._held = self._held, None
            self._state_failed(exc)
            self.followups += [RequestUnsent(action.sn, str(exc)) for action in held]
            return
        except BaseException:
            self._held = None
            raise
        held, self._held = self._held, None
        if held:
            self._state_ok()
        for action in held:
            self._send(action)

    def _request(self, action: Activate | Reenable, unsaved: str | None) -> None:
        """Send ``action``, unless the record written ahead of it failed to save (``unsaved``
        says why): then it is not sent, and the engine is told."""
        if unsaved is None:
            self._send(action)
        else:
            self.followups.append(RequestUnsent(action.sn, unsaved))

    def _send(self, action: Activate | Reenable) -> None:
        if self._held is not None:
            self._held.append(action)
            return
        self.outstanding += 1
        if isinstance(action, Activate):
            self._exosite.submit(action.sn, action.vendor, action.model)
        else:
            self._reenable(action)

    def answered(self) -> None:
        self.outstanding -= 1

    def lost(self) -> bool:
        """At the end of a stop: whether CIKs the keystore never took are lost, said if so."""
        if not self.unstored:
            return False
        log.critical(
            "stopped with CIKs the keystore never took, for %s: they were delivered to "
            "their nodes but are not kept here; re-enable those devices if the nodes lose them",
            ", ".join(sorted(self.unstored)),
        )
        return True

    # ----------------------------------------------------------------- keystore

    def store_due(self) -> float | None:
        """When the next attempt to store the held CIKs is due, if any are held."""
        return self._store_retry_at if self.unstored else None

    def retry_stores(self, now: float) -> None:
        if not self.unstored or self._store_retry_at is None or now < self._store_retry_at:
            return
        for sn, action in list(self.unstored.items()):
            if not self._store(action, held=True):
                return
            del self.unstored[sn]
            logs.emit(Log("cik_stored_late", logging.WARNING, "CIK stored after retrying", sn))
            deferred = self._deferred.pop(sn, None)
            if deferred is not None:
                self._save(deferred)
        self._store_failures = 0
        self._store_retry_at = None
        self._exosite.resume()

    def _store(self, action: StoreCik, *, held: bool = False) -> bool:
        """Write the CIK; False if it is kept in memory instead (``held``: it already is).

        In the order received: a CIK is never stored behind one that waits.
        """
        if not held and self.unstored:
            self.unstored[action.sn] = action
            return False
        try:
            store = self._keystore.store_unverified if action.unverified else self._keystore.store
            store(action.vendor, action.model, action.sn, action.cik)
        except Exception as exc:  # noqa: BLE001 (whatever a backend raises, the CIK stays)
            self.unstored[action.sn] = action
            problem = str(exc) if isinstance(exc, KeystoreError) else type(exc).__name__
            self._exosite.pause()
            self._store_failures += 1
            delay = backoff_ceiling(self._store_failures, STORE_RETRY_BASE, 2.0, STORE_RETRY_CAP)
            self._store_retry_at = time.monotonic() + delay
            text = (
                f"CIK received but not stored ({problem}); kept in memory and retried in "
                f"{delay:.1f} s; no new activation starts meanwhile"
            )
            logs.emit(Log("cik_unstored", logging.CRITICAL, text, action.sn))
            return False
        return True

    def _lookup(self, action: LookupCik) -> CikLookedUp:
        held = self.unstored.get(action.sn)
        if held is not None and not held.unverified:
            return CikLookedUp(action.sn, held.cik)
        try:
            cik = self._keystore.load(action.vendor, action.model, action.sn)
        except KeystoreError as exc:
            return CikLookedUp(action.sn, None, error=f"cannot read the keyring: {exc}")
        return CikLookedUp(action.sn, cik)

    # -------------------------------------------------------------- state, MQTT

    def _save(self, node: Node) -> str | None:
        """Save the node's record; None once done, else what went wrong."""
        sn = node.sn
        if sn in self.unstored:
            self._deferred[sn] = node
            log.debug(
                "node %s: record kept as written ahead until its CIK is stored",
                sn,
                extra=logs.about(sn),
            )
            return None
        try:
            # an activated record need not wait for the disk: its CIK is in the keystore,
            # and a record lost to a power cut is rebuilt from it (the write-ahead says
            # "activating", and recovery finds the CIK); every other record must
            self._state.save(node, durable=node.state is not State.ACTIVATED)
        except StateError as exc:
            self._state_failed(exc)
            return str(exc)
        if not self._state.in_transaction:
            self._state_ok()
        return None

    def _state_failed(self, exc: StateError) -> None:
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
