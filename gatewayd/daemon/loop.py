"""The daemon: one thread owning the engine, adapters around it.

The main thread takes one item at a time from its :class:`~gatewayd.daemon.inbox.Inbox`
(Exosite's answers and the writer's flushes first), hands it to the engine and
carries out the actions it returns, in order: a CIK is stored, and flushed, before
its node's record says ``activated`` and before it is published. The writer thread
flushes (:mod:`gatewayd.daemon.writer`) while the main thread goes on. What carrying
out actions gives back for the engine (a CIK read from the keystore, a request that
could not be sent) goes to the engine next.
"""

from __future__ import annotations

import functools
import logging
import random
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

from gatewayd import __version__
from gatewayd.adapters.systemd import Notifier
from gatewayd.config.schema import Config
from gatewayd.core import protocol
from gatewayd.core.actions import Action
from gatewayd.core.engine import Engine
from gatewayd.core.errors import GatewaydError
from gatewayd.core.events import (
    ActivationAnswered,
    CikChecked,
    Connected,
    Disconnected,
    Drain,
    Event,
    Message,
    ReenableAnswered,
    Tick,
)
from gatewayd.core.model import State
from gatewayd.daemon import control, preflight, status
from gatewayd.daemon.control import Request
from gatewayd.daemon.executor import Executor
from gatewayd.daemon.inbox import Inbox, Item, Stop
from gatewayd.daemon.intake import Intake
from gatewayd.daemon.operator import Operator
from gatewayd.daemon.wiring import (
    check_exosite,
    engine_settings,
    open_keystore,
    read_password,
    reenabler,
    tls_context,
    vendor_api,
    vendor_token,
    writer,
)
from gatewayd.daemon.writer import Flushed

log = logging.getLogger(__name__)

REQUESTS_AHEAD: Final = (State.ACTIVATING, State.PENDING, State.NEEDS_REENABLE)
"""Stored states with an Exosite request ahead: the HTTP client is loaded at start then."""
ANNOUNCE_BATCH: Final = 64
"""At most this many waiting announces are handled together (see Daemon._announces)."""
STORE_WAIT: Final = 60.0
"""How long a stop waits for a failing keystore to take the CIKs it holds."""
FORCED_WAIT: Final = 10.0  # how long a forced stop waits for a flush under way


class Daemon:
    """Built in two steps: what loads the configuration, keyring and state (then systemd
    is told READY=1), and the links to the broker and to Exosite (:meth:`run`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._inbox = Inbox()
        self._topics = protocol.Topics(config.mqtt.topic_prefix, config.gateway.id)
        self._keystore = open_keystore(config)
        self._state = preflight.open_state(config.gateway.state_dir)
        try:
            self._keystore.recover()
            preflight.check_keystore(self._keystore)
        except GatewaydError:
            self._state.close()
            raise
        self._token = vendor_token(config, self._keystore)
        if self._token is None:
            log.info(
                "no vendor token: a CIK a node offers is never adopted, for whose it is cannot "
                "be proved"
            )
        settings = engine_settings(config, vendor_token=self._token is not None)
        self._engine = Engine(
            settings, self._state.all(), time.monotonic, random.uniform, time.time
        )
        self._stopping = False
        self._stop_deadline = 0.0
        self._forced = False
        accounts = frozenset(filter(None, (config.mqtt.username, config.mqtt.answers_username)))
        inbox = self._inbox
        self._intake = Intake(self._topics, config.nodes, inbox.put, inbox.waiting, accounts)
        # every setting the links need is read and checked here, before READY=1
        self._password = read_password(config)
        self._tls, self._answers_tls = tls_context(config), tls_context(config, answers=True)
        check_exosite(config)
        self._reporter = status.Reporter(self._engine, self._publish_status, Notifier())
        self._control = control.serve(config.gateway.control_socket, self._inbox.put)

    def _attach(self) -> None:
        """The broker link, the Exosite workers and the vendor API client.

        Imported here, after READY=1: paho and requests take longer
        to load than the whole state, and nothing before READY=1 needs them.
        """
        from gatewayd.adapters.exosite import ExositeClient  # noqa: PLC0415 (see above)
        from gatewayd.adapters.mqtt import MqttLink  # noqa: PLC0415

        config = self.config
        vendor = vendor_api(config, self._token)
        self._exosite = ExositeClient(config.exosite, self._inbox.answer, vendor)
        self._writer = writer(config, self._keystore, self._state, self._inbox.answer)
        counts = self._engine.counts()
        if not any(counts.values()) or any(counts[state] for state in REQUESTS_AHEAD):
            self._exosite.prepare()  # nodes to activate, or none yet: the first request waits not
            self._keystore.prepare()  # and the first CIK stored waits for no import
        self._link = MqttLink(
            config.mqtt,
            subscribe=self._topics.announce_filter,
            will_topic=self._topics.status,
            will_payload=status.offline(),
            password=self._password,
            deliver=self._intake.receive,
            tls=self._tls,
            answers_tls=self._answers_tls,
        )
        self._reporter.publishes = self._link  # watched, and shown in the status
        self._executor = Executor(
            self._keystore,
            self._state,
            self._exosite,
            self._link,
            self._topics,
            reenabler(vendor, self._inbox.answer),
            self._writer.submit,
        )
        self._operator = Operator(
            config,
            self._engine,
            self._executor,
            self._intake,
            self._reporter,
            self._exosite,
            self._handle,
            lambda: self._stopping,
            self._token is not None,
        )

    def _publish_status(self, payload: bytes) -> None:
        self._link.publish(self._topics.status, payload, retain=True)

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
        for found in preflight.retired_only(self._keystore, list(self._engine.nodes())):
            unfinished += self._engine.handle(found)
        counts = self._engine.counts()
        log.info(
            "gatewayd %s started: %s",
            __version__,
            ", ".join(f"{n} {state}" for state, n in counts.items()),
        )
        self._carry_out(unfinished)
        self._handle(Tick())
        while not self._drained():
            self._dispatch(self._inbox.take(self._deadline))
            if self._inbox.idle() or self._executor.batches.full:
                self._executor.cut()
                self._follow_up()
        self._exosite.close(timeout=0)
        self._link.stop(self._topics.status, status.offline())
        self._writer.close(timeout=FORCED_WAIT if self._forced else STORE_WAIT)
        self._close()
        if self._executor.held.lost():
            return 1
        log.info("gatewayd stopped")
        return 0

    def _close(self) -> None:
        self._reporter.notifier.close()
        self._state.close()
        if self._control is not None:
            self._control.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._inbox.put(Stop(signum))

    def _deadline(self) -> float | None:
        """When a retry, a warning, the status, a held CIK's write or a stop's end is due."""
        stop = self._stop_deadline if self._stopping else None
        due = (self._engine.next_deadline(), self._reporter.due(), self._executor.held.due(), stop)
        return min((d for d in due if d is not None), default=None)

    def _announces(self, first: Message) -> None:
        """``first`` and the announces waiting behind it, up to ANNOUNCE_BATCH (a waiting
        answer ends the batch); their requests go out once their records are flushed."""
        for message in self._inbox.announces(first, ANNOUNCE_BATCH):
            event = self._intake.announce(message)
            if event is not None:
                self._carry_out(self._engine.handle(event))

    def _handle(self, event: Event) -> None:
        self._carry_out(self._engine.handle(event))

    def _carry_out(self, actions: list[Action], done: Callable[[], None] | None = None) -> None:
        """Carry out ``actions`` (then ``done``, maybe after a flush), and their follow-ups."""
        self._executor.run(actions, done)
        self._follow_up()

    def _follow_up(self) -> None:
        """Hand the engine what carrying out actions gave back for it, until nothing does."""
        followups = self._executor.followups
        while followups:
            self._executor.run(self._engine.handle(followups.pop(0)))

    def _drained(self) -> bool:
        """Stopping, no request on the wire (a 200 can no longer arrive), every CIK stored.
        The wait for the keystore is bounded; the wait for requests is not (each is
        bounded by its timeout), unless a second signal forces the stop."""
        if not self._stopping:
            return False
        if self._forced:
            return True
        if self._executor.outstanding or self._executor.batches.busy:
            return False
        return not self._executor.held or time.monotonic() >= self._stop_deadline

    def _dispatch(self, item: Item) -> None:
        match item:
            case Message():
                self._announces(item)
            case ActivationAnswered():
                self._executor.answered()
                # the worker's slot is free once the answer is carried out (its CIK flushed)
                free = functools.partial(self._exosite.handled, item)
                self._carry_out(self._engine.handle(item), done=free)
            case Flushed():
                self._executor.flushed(item)  # what waited for it runs (then follow-ups)
            case ReenableAnswered() | CikChecked():
                self._executor.answered()
                self._handle(item)
            case Connected() | Disconnected():
                broker = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
                self._reporter.link(item, broker, self._topics.announce_filter)
            case Stop(signal=signum):
                self._signal(signum)
            case Request():
                self._operator.command(item)
            case Tick():
                self._executor.retry_stores(time.monotonic())
                self._handle(item)
            case _:
                self._handle(item)
        self._reporter.report()

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._operator.reload()
        elif not self._stopping:
            self._stop(signum)
        else:
            log.warning(
                "signal %d again: stopping with %d requests in flight and %d CIKs unstored",
                signum,
                self._executor.outstanding,
                len(self._executor.held.ciks),
            )
            self._forced = True

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
        if self._executor.held:
            log.critical(
                "waiting up to %.0f s for the keystore to take %d CIKs it has refused so far",
                STORE_WAIT,
                len(self._executor.held.ciks),
            )
        self._handle(Drain())
        self._exosite.close(timeout=0)
