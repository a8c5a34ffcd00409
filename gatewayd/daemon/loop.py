"""The daemon: one thread owning the engine, adapters around it.

paho's network thread, the Exosite workers, the control server and the signal
handlers only put items on a queue. The main thread takes them one at a time,
hands them to the engine and carries out the actions it returns, in order: a
CIK is stored (fsynced) before its node's record says ``activated`` and before
it is published. What carrying them out gives back for the engine (a CIK read
from the keystore, a request that could not be sent) goes to the engine next.

There are two queues, both ``queue.SimpleQueue``: Exosite's answers, and
everything else. An answer goes first, so that a CIK that has arrived never
waits behind a storm of announces; SimpleQueue has no priorities, and it is
the one queue of the standard library whose ``put`` may be called from a
signal handler (a PriorityQueue's lock, taken by the main thread when the
signal comes, would deadlock it). An answer put on its queue wakes the main
thread with a marker on the other.
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from gatewayd import __version__
from gatewayd.adapters import logs
from gatewayd.adapters.systemd import Notifier
from gatewayd.config import reload
from gatewayd.config.load import load
from gatewayd.config.schema import Config
from gatewayd.core import protocol
from gatewayd.core.actions import Action, Reenable
from gatewayd.core.engine import Engine
from gatewayd.core.errors import ConfigError, GatewaydError
from gatewayd.core.events import (
    ActivationAnswered,
    Connected,
    Disconnected,
    Drain,
    Event,
    Forget,
    LinkEvent,
    Message,
    ReenableAnswered,
    Republish,
    Retry,
    Tick,
)
from gatewayd.daemon import control, preflight, status
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor
from gatewayd.daemon.intake import Intake
from gatewayd.daemon.wiring import (
    check_exosite,
    engine_settings,
    open_keystore,
    read_password,
    tls_context,
    vendor_token,
)

log = logging.getLogger(__name__)

MAX_WAIT: Final = 0.5
"""The longest the main thread waits for an event: a signal that another thread
receives does not wake it, so it looks at least this often."""
ANNOUNCE_BATCH: Final = 64
"""At most this many waiting announces are handled together (see Daemon._announces)."""
STORE_WAIT: Final = 60.0
"""How long a stop waits for a failing keystore to take the CIKs it holds."""


@dataclass(frozen=True, slots=True)
class Stop:
    signal: int


@dataclass(frozen=True, slots=True)
class Wake:
    """An answer waits in the answers queue."""


Answered = ActivationAnswered | ReenableAnswered
Item = Event | LinkEvent | Stop | Request

COMMANDS: Final[dict[str, type[Republish | Retry | Forget]]] = {
    "republish": Republish,
    "retry": Retry,
    "forget": Forget,
}


class Daemon:
    """Built in two steps: what loads the configuration, keyring and state (then systemd
    is told READY=1), and the links to the broker and to Exosite (:meth:`run`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._queue: queue.SimpleQueue[Item | Wake] = queue.SimpleQueue()
        # Exosite's answers go first: a CIK that has arrived never waits behind announces
        self._answers: queue.SimpleQueue[Answered] = queue.SimpleQueue()
        self._topics = protocol.Topics(config.mqtt.topic_prefix, config.gateway.id)
        self._keystore = open_keystore(config)
        self._state = preflight.open_state(config.gateway.state_dir)
        try:
            self._keystore.recover()
            preflight.check_keystore(self._keystore)
        except GatewaydError:
            self._state.close()
            raise
        self._engine = Engine(
            engine_settings(config), self._state.all(), time.monotonic, random.uniform, time.time
        )
        self._held: Item | None = None
        """An event taken from the queue while gathering announces, handled next."""
        self._stopping = False
        self._stop_deadline = 0.0
        self._forced = False
        user = config.mqtt.username
        reserved = frozenset() if user is None else frozenset({user})
        self._intake = Intake(
            self._topics, config.nodes, self._queue.put, self._queue.qsize, reserved
        )
        # every setting the links need is read and checked here, before READY=1
        self._password = read_password(config)
        self._tls = tls_context(config)
        check_exosite(config)
        self._token = vendor_token(config, self._keystore)
        self._reporter = status.Reporter(self._engine, self._publish_status, Notifier())
        self._control = control.serve(config.gateway.control_socket, self._queue.put)

    def _attach(self) -> None:
        """The broker link, the Exosite workers and the vendor API client.

        Imported here, after READY=1: paho and requests take longer
        to load than the whole state, and nothing before READY=1 needs them.
        """
        from gatewayd.adapters.exosite import ExositeClient  # noqa: PLC0415 (see above)
        from gatewayd.adapters.mqtt import MqttLink  # noqa: PLC0415

        config = self.config
        self._exosite = ExositeClient(config.exosite, self._answered)
        self._link = MqttLink(
            config.mqtt,
            subscribe=self._topics.announce_filter,
            will_topic=self._topics.status,
            will_payload=status.offline(),
            password=self._password,
            deliver=self._intake.receive,
            tls=self._tls,
        )
        self._vendor = None
        if self._token is not None:
            from gatewayd.adapters.vendor import VendorClient  # noqa: PLC0415 (requests, only if needed)

            self._vendor = VendorClient(config.exosite, self._token)
        self._executor = Executor(
            self._keystore,
            self._state,
            self._exosite,
            self._link,
            self._topics,
            self._reenable,
        )

    def _publish_status(self, payload: bytes) -> None:
        self._link.publish(self._topics.status, payload, retain=True)

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        # a SIGHUP that came while starting waited, blocked (gatewayd.__main__): now it is
        # handled; the threads started so far keep it blocked, so it reaches this one
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        # ready once configuration, keystore and state are loaded; the broker may come later
        self._reporter.notifier.ready(self._reporter.text())
        try:
            self._attach()
            self._link.start()
        except GatewaydError as exc:
            log.error("cannot start: %s", exc)  # noqa: TRY400 (the message is the whole story)
            self._close()
            return 1
        unfinished = self._engine.start()  # a request in flight at the last stop: recovering
        counts = self._engine.counts()
        log.info(
            "gatewayd %s started: %s",
            __version__,
            ", ".join(f"{n} {state}" for state, n in counts.items()),
        )
        self._carry_out(unfinished)
        self._handle(Tick())
        while not self._drained():
            item = self._next_item()
            self._dispatch(item)
        self._exosite.close(timeout=0)
        self._link.stop(self._topics.status, status.offline())
        self._close()
        if self._executor.unstored:
            lost = ", ".join(sorted(self._executor.unstored))
            log.critical(
                "stopped with CIKs the keystore never took, for %s: they were delivered to "
                "their nodes but are not kept here; re-enable those devices if the nodes lose them",
                lost,
            )
            return 1
        log.info("gatewayd stopped")
        return 0

    def _close(self) -> None:
        self._reporter.notifier.close()
        self._state.close()
        if self._control is not None:
            self._control.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._queue.put(Stop(signum))

    def _deadline(self) -> float | None:
        """When something is next due: a retry, a warning, the status, a held CIK's write."""
        due = (self._engine.next_deadline(), self._reporter.due(), self._executor.store_due())
        return min((d for d in due if d is not None), default=None)

    def _answered(self, answer: Answered) -> None:
        """Called from the Exosite workers and re-enable threads."""
        self._answers.put(answer)
        self._queue.put(Wake())

    def _next_item(self) -> Item:
        """The next event: an answer first; a Tick when something is due, even while
        events keep coming."""
        while True:
            try:
                return self._answers.get_nowait()
            except queue.Empty:
                pass
            if self._held is not None:
                held, self._held = self._held, None
                return held
            deadline = self._deadline()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                return Tick()
            wait = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - now)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                return Tick()
            if not isinstance(item, Wake):
                return item

    def _announces(self, first: Message) -> None:
        """``first`` and the announces waiting behind it, up to ANNOUNCE_BATCH, handled in
        one state transaction: a boot storm costs one fsync per batch, not one per node.
        Their requests go out once the transaction is committed, so each request's
        write-ahead record is on disk before it. A waiting answer ends the batch."""
        batch = [first]
        while len(batch) < ANNOUNCE_BATCH and self._held is None:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Message):
                batch.append(item)
            elif isinstance(item, Wake):
                break  # an answer waits: it goes next
            else:
                self._held = item
        with self._executor.requests_held(), self._state.transaction():
            for message in batch:
                event = self._intake.announce(message)
                if event is not None:
                    self._carry_out(self._engine.handle(event))
        self._carry_out([])  # what a transaction that failed left for the engine

    def _handle(self, event: Event) -> None:
        self._carry_out(self._engine.handle(event))

    def _carry_out(self, actions: list[Action], stored: Callable[[], None] | None = None) -> bool:
        """Carry out ``actions``, then hand the engine what that gave back for it, until
        nothing does; True if ``stored`` was called (a CIK among them is stored)."""
        called = self._executor.run(actions, stored)
        followups = self._executor.followups
        while followups:
            self._executor.run(self._engine.handle(followups.pop(0)))
        return called

    def _drained(self) -> bool:
        """Stopping, no request on the wire (a 200 can no longer arrive), every CIK stored.

        The wait for the keystore is bounded; the wait for requests is not (each
        is bounded by its timeout), unless a second signal forces the stop.
        """
        if not self._stopping:
            return False
        if self._forced:
            return True
        if self._executor.outstanding:
            return False
        return not self._executor.unstored or time.monotonic() >= self._stop_deadline

    def _dispatch(self, item: Item) -> None:
        match item:
            case Message():
                self._announces(item)
            case ActivationAnswered():
                self._executor.answered()
                # the worker's slot is free once the CIK is safe: before its record and publish
                free = functools.partial(self._exosite.handled, item)
                if not self._carry_out(self._engine.handle(item), stored=free):
                    free()
            case ReenableAnswered():
                self._executor.answered()
                self._handle(item)
            case Connected() | Disconnected():
                self._link_event(item)
            case Stop(signal=signum):
                self._signal(signum)
            case Request():
                self._command(item)
            case Tick():
                self._executor.retry_stores(time.monotonic())
                self._handle(item)
            case _:
                self._handle(item)
        self._reporter.report()

    def _link_event(self, event: Connected | Disconnected) -> None:
        if isinstance(event, Disconnected):
            if self._reporter.connected:
                log.warning("disconnected from the broker (%s); reconnecting", event.reason)
            self._reporter.connection(connected=False)
            return
        self._reporter.connection(connected=True)
        if event.subscribed:
            log.info(
                "connected to broker %s:%d, subscribed to %s",
                self.config.mqtt.host,
                self.config.mqtt.port,
                self._topics.announce_filter,
            )

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._reload()
        elif not self._stopping:
            self._stop(signum)
        else:
            log.warning(
                "signal %d again: stopping with %d requests in flight and %d CIKs unstored",
                signum,
                self._executor.outstanding,
                len(self._executor.unstored),
            )
            self._forced = True

    def _reload(self) -> tuple[bool, str]:
        """SIGHUP or ``gatewayctl reload``: apply what can change live; keep the running
        configuration on any error. Whether it was taken, and what was done."""
        notifier = self._reporter.notifier
        notifier.reloading()
        try:
            loaded = load(Path(self.config.source))
        except ConfigError as exc:
            said = f"reload refused, the running configuration is kept: {exc}"
            log.error("%s", said)  # noqa: TRY400 (the message is the whole story)
            notifier.ready(self._reporter.text())
            return False, said
        else:
            change = reload.plan(self.config, loaded)
            self.config = change.config
            logs.set_level(change.config.gateway.log_level)
            self._engine.settings = engine_settings(change.config)
            self._intake.nodes = change.config.nodes
            self._exosite.reconfigure(change.config.exosite)
            said = f"configuration reloaded from {self.config.source}: "
            said += ", ".join(change.applied) or "nothing changed"
            log.info("%s", said)
            if change.restart:
                later = ", ".join(change.restart)
                log.warning(
                    "changed in %s but applied only by a restart: %s", self.config.source, later
                )
                said += f"; changed, applied only by a restart: {later}"
        notifier.ready(self._reporter.text())
        return True, said

    def _command(self, request: Request) -> None:
        """An operator's command from the control channel, answered once carried out; one
        its caller has given up on is not carried out."""
        if not request.take():
            log.warning("gatewayctl %s given up by its caller: not carried out", request.command)
            return
        if request.command == "reload":
            ok, said = self._reload()
            request.answer({"ok": ok, "message": said})
            return
        if request.command == "status":
            summary = self._reporter.summary() | {
                "announces_dropped": self._intake.dropped,
                "state_database": "failing" if self._executor.state_failing else "ok",
                "unreadable_ciks": self._engine.unreadable(),
            }
            request.answer({"ok": True, **summary})
            return
        sn = request.sn or ""
        refusal = None
        if self._stopping:
            refusal = "gatewayd is stopping"
        elif sn in self._executor.unstored:
            refusal = "its CIK is not stored yet (the keyring refuses it); see the journal"
        if refusal is not None:
            request.answer({"ok": False, "message": f"{sn}: {refusal}"})
            return
        self._executor.results.clear()
        self._handle(COMMANDS[request.command](sn))
        results = self._executor.results
        ok = bool(results) and all(r.ok for r in results)
        message = "; ".join(r.message for r in results) or f"{sn}: nothing was done"
        request.answer({"ok": ok, "message": message})

    def _stop(self, signum: int) -> None:
        self._stopping = True
        self._reporter.notifier.stopping(f"stopping; {self._reporter.text()}")
        self._stop_deadline = time.monotonic() + STORE_WAIT
        log.info(
            "signal %d: stopping; %d requests in flight are waited for "
            "(a second signal stops at once, and their CIKs may be lost)",
            signum,
            self._executor.outstanding,
        )
        if self._executor.unstored:
            log.critical(
                "waiting up to %.0f s for the keystore to take %d CIKs it has refused so far",
                STORE_WAIT,
                len(self._executor.unstored),
            )
        self._handle(Drain())
        self._exosite.close(timeout=0)

    def _reenable(self, action: Reenable) -> None:
        """Re-enable a serial through the vendor API, in the background."""
        if self._vendor is None:
            self._answered(ReenableAnswered(action.sn, "no vendor token is configured"))
            return
        self._vendor.reenable_in_background(
            action.model,
            action.sn,
            lambda error: self._answered(ReenableAnswered(action.sn, error)),
        )
