"""The daemon: one queue, one thread owning the engine, adapters around it.

paho's network thread and the Exosite workers only put events on the queue.
The main thread takes them one at a time, hands them to the engine and carries
out the actions it returns, in order: a CIK is stored (fsynced) before its
node's record says ``activated`` and before it is published.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from gatewayd import __version__, logs, protocol, status
from gatewayd.config import DEFAULT_PATH, Config, load
from gatewayd.engine import Engine
from gatewayd.errors import ConfigError, GatewaydError, InvalidRequest
from gatewayd.events import (
    ActivationAnswered,
    BadAnnounce,
    Drain,
    Event,
    Reenable,
    ReenableAnswered,
    Settings,
    Tick,
)
from gatewayd.executor import Executor
from gatewayd.exosite import ExositeClient
from gatewayd.keystore import Keystore, load_key, open_backend
from gatewayd.mqtt import Connected, Disconnected, LinkEvent, Message, MqttLink
from gatewayd.secret import Secret
from gatewayd.state import StateDB
from gatewayd.systemd import Notifier
from gatewayd.vendor import VendorApiError, VendorClient

log = logging.getLogger(__name__)

VENDOR_TOKEN_CREDENTIAL: Final = "gatewayd-vendor-token"  # noqa: S105 (a credential's name)

MAX_WAIT: Final = 0.5
"""The longest the main thread waits for an event: a signal that another thread
receives does not wake it, so it looks at least this often."""
STORE_WAIT: Final = 60.0
"""How long a stop waits for a failing keystore to take the CIKs it holds."""


@dataclass(frozen=True, slots=True)
class Stop:
    signal: int


@dataclass(frozen=True, slots=True)
class Wake:
    """An answer waits in the answers queue."""


Answered = ActivationAnswered | ReenableAnswered
Item = Event | LinkEvent | Stop


def engine_settings(config: Config) -> Settings:
    return Settings(
        vendor=config.exosite.vendor,
        model=config.exosite.model,
        models=frozenset(config.exosite.models),
        rejected_retry_after=config.nodes.rejected_retry_after,
        api=config.exosite.api,
        auto_reenable=config.exosite.auto_reenable,
        backoff_base=config.exosite.retry_base,
        backoff_cap=config.exosite.retry_cap,
    )


def open_keystore(config: Config) -> Keystore:
    key = load_key(config.keyring.key_file, os.environ.get("CREDENTIALS_DIRECTORY"))
    backend = open_backend(config.keyring.backend, config.gateway.state_dir / "keyring", key)
    return Keystore(backend, config.keyring.service)


def vendor_client(config: Config, keystore: Keystore) -> VendorClient | None:
    """The vendor API client, with the token moved into the keyring; None without a token."""
    exosite = config.exosite
    path = exosite.vendor_token_file
    if path is None and os.environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(os.environ["CREDENTIALS_DIRECTORY"], VENDOR_TOKEN_CREDENTIAL)
        path = credential if credential.exists() else None
    token: Secret | None
    if path is not None:
        try:
            token = Secret(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            key = "exosite.vendor_token_file"
            raise ConfigError(config.source, key, f"a readable file ({exc.strerror})") from exc
        keystore.store_token(exosite.vendor, token)
    else:
        token = keystore.load_token(exosite.vendor)
    if token is None:
        if exosite.auto_reenable:
            raise ConfigError(
                config.source,
                "exosite.auto_reenable",
                "a vendor token: set exosite.vendor_token_file, or the systemd credential "
                f"{VENDOR_TOKEN_CREDENTIAL}",
            )
        return None
    return VendorClient(exosite, token)


def read_password(config: Config) -> Secret | None:
    path = config.mqtt.password_file
    if path is None:
        return None
    try:
        return Secret(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(
            config.source, "mqtt.password_file", f"a readable file ({exc.strerror})"
        ) from exc


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._queue: queue.SimpleQueue[Item | Wake] = queue.SimpleQueue()
        # Exosite's answers go first: a CIK that has arrived never waits behind announces
        self._answers: queue.SimpleQueue[Answered] = queue.SimpleQueue()
        self._topics = protocol.Topics(config.mqtt.topic_prefix, config.gateway.id)
        self._keystore = open_keystore(config)
        self._state = StateDB.in_dir(config.gateway.state_dir)
        self._engine = Engine(engine_settings(config), self._state.all(), time.time, random.uniform)
        self._stopping = False
        self._stop_deadline = 0.0
        self._forced = False
        self._exosite = ExositeClient(config.exosite, self._answered)
        self._link = MqttLink(
            config.mqtt,
            subscribe=self._topics.announce_filter,
            will_topic=self._topics.status,
            will_payload=status.offline(),
            password=read_password(config),
            deliver=self._queue.put,
        )
        self._vendor = vendor_client(config, self._keystore)
        self._executor = Executor(
            self._engine,
            self._keystore,
            self._state,
            self._exosite,
            self._link,
            self._topics,
            self._reenable,
        )
        self._reporter = status.Reporter(self._engine, self._link, self._topics.status, Notifier())

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self._link.start()
        counts = self._engine.counts()
        log.info(
            "gatewayd %s started: %s",
            __version__,
            ", ".join(f"{n} {state}" for state, n in counts.items()),
        )
        self._executor.run(self._engine.start())
        self._executor.run(self._engine.handle(Tick()))
        # ready once configuration, keystore and state are loaded; the broker may come later
        self._reporter.notifier.ready(self._reporter.text())
        while not self._drained():
            item = self._next_item()
            self._dispatch(item)
        self._exosite.close(timeout=0)
        self._link.stop(self._topics.status, status.offline())
        self._state.close()
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
            deadline = self._deadline()
            now = time.time()
            if deadline is not None and deadline <= now:
                return Tick()
            wait = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - now)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                return Tick()
            if not isinstance(item, Wake):
                return item

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
        return not self._executor.unstored or time.time() >= self._stop_deadline

    def _dispatch(self, item: Item) -> None:
        match item:
            case Message():
                self._executor.run(self._engine.handle(self._announce(item)))
            case ActivationAnswered() | ReenableAnswered():
                self._executor.answered()
                self._executor.run(self._engine.handle(item))
            case Connected() | Disconnected():
                self._link_event(item)
            case Stop(signal=signum):
                self._signal(signum)
            case Tick():
                self._executor.retry_stores(time.time())
                self._executor.run(self._engine.handle(item))
            case _:
                self._executor.run(self._engine.handle(item))
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
            log.warning("SIGHUP ignored: restart gatewayd to apply a changed configuration")
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

    def _stop(self, signum: int) -> None:
        self._stopping = True
        self._reporter.notifier.stopping(f"stopping; {self._reporter.text()}")
        self._stop_deadline = time.time() + STORE_WAIT
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
        self._executor.run(self._engine.handle(Drain()))
        self._exosite.close(timeout=0)

    def _reenable(self, action: Reenable) -> None:
        """Re-enable a serial through the vendor API, on a thread of its own (it is rare)."""
        vendor = self._vendor
        if vendor is None:
            self._answered(ReenableAnswered(action.sn, "no vendor token is configured"))
            return

        def work() -> None:
            try:
                vendor.reenable(action.model, action.sn)
            except VendorApiError as exc:
                self._answered(ReenableAnswered(action.sn, str(exc)))
            else:
                self._answered(ReenableAnswered(action.sn))

        threading.Thread(target=work, name=f"reenable-{action.sn}", daemon=True).start()

    def _announce(self, message: Message) -> Event:
        topics = self._topics
        try:
            return protocol.parse_announce(
                topics,
                message.topic,
                message.payload,
                self.config.nodes.sn_pattern,
                message.response_topic,
                message.correlation,
            )
        except InvalidRequest as exc:
            sn = exc.sn
            response = None
            if sn is not None:
                response = protocol.response_target(
                    topics, sn, message.response_topic, message.correlation
                )
            return BadAnnounce(str(exc), sn, response)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gatewayd", description="Activate sensor nodes with Exosite over MQTT."
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="the TOML file")
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.gateway.log_level)
    try:
        daemon = Daemon(config)
    except ConfigError as exc:
        log.error("%s", exc)  # noqa: TRY400 (a bad setting, not a bug: no traceback)
        return 2
    except GatewaydError as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400
        return 1
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
