"""The daemon: one queue, one thread owning the engine, adapters around it.

paho's network thread and the Exosite workers only put events on the queue.
The main thread takes them one at a time, hands them to the engine and carries
out the actions it returns, in order: a CIK is stored (fsynced) before its
node's record says ``activated`` and before it is published.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from gatewayd import __version__, logs, protocol
from gatewayd.config import DEFAULT_PATH, Config, load
from gatewayd.engine import Engine
from gatewayd.errors import ConfigError, GatewaydError, InvalidRequest, KeystoreError, StateError
from gatewayd.events import (
    Action,
    Activate,
    ActivationAnswered,
    BadAnnounce,
    CikLookedUp,
    Drain,
    Event,
    Log,
    LookupCik,
    Publish,
    SaveNode,
    Settings,
    StoreCik,
    Tick,
)
from gatewayd.exosite import ExositeClient
from gatewayd.keystore import Keystore, load_key, open_backend
from gatewayd.mqtt import Connected, Disconnected, LinkEvent, Message, MqttLink
from gatewayd.secret import Secret
from gatewayd.state import StateDB

log = logging.getLogger(__name__)

STATUS_INTERVAL: Final = 2.0
"""The status topic is republished at most this often."""
STORE_RETRY_CAP: Final = 30.0


@dataclass(frozen=True, slots=True)
class Stop:
    signal: int


Item = Event | LinkEvent | Stop


def engine_settings(config: Config) -> Settings:
    return Settings(
        vendor=config.exosite.vendor,
        model=config.exosite.model,
        models=frozenset(config.exosite.models),
        rejected_retry_after=config.nodes.rejected_retry_after,
        backoff_base=config.exosite.retry_base,
        backoff_cap=config.exosite.retry_cap,
    )


def open_keystore(config: Config) -> Keystore:
    key = load_key(config.keyring.key_file, os.environ.get("CREDENTIALS_DIRECTORY"))
    backend = open_backend(config.keyring.backend, config.gateway.state_dir / "keyring", key)
    return Keystore(backend, config.keyring.service)


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
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._topics = protocol.Topics(config.mqtt.topic_prefix, config.gateway.id)
        self._keystore = open_keystore(config)
        self._state = StateDB.in_dir(config.gateway.state_dir)
        self._engine = Engine(engine_settings(config), self._state.all(), time.time, random.uniform)
        self._started = time.time()
        self._outstanding = 0
        self._stopping = False
        self._forced = False
        self._status_sent: tuple[object, ...] | None = None
        self._status_at = 0.0
        self._connected = False
        self._exosite = ExositeClient(config.exosite, self._queue.put)
        self._link = MqttLink(
            config.mqtt,
            subscribe=self._topics.announce_filter,
            will_topic=self._topics.status,
            will_payload=self._status_payload("offline"),
            password=read_password(config),
            deliver=self._queue.put,
        )

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
        self._execute(self._engine.start())
        self._execute(self._engine.handle(Tick()))
        while not self._drained():
            item = self._next_item()
            self._dispatch(item)
        self._exosite.close(timeout=0)
        self._link.stop(self._topics.status, self._status_payload("offline"))
        self._state.close()
        log.info("gatewayd stopped")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._queue.put(Stop(signum))

    def _next_item(self) -> Item:
        deadlines = [d for d in (self._engine.next_deadline(), self._status_due()) if d]
        timeout = max(0.0, min(deadlines) - time.time()) if deadlines else None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return Tick()

    def _drained(self) -> bool:
        """Stopping, and no request is on the wire: a 200 can no longer arrive."""
        return self._stopping and (self._outstanding == 0 or self._forced)

    def _dispatch(self, item: Item) -> None:
        match item:
            case Message():
                self._execute(self._engine.handle(self._announce(item)))
            case ActivationAnswered():
                self._outstanding -= 1
                self._execute(self._engine.handle(item))
            case Connected(subscribed=False):
                self._connected = True
                self._status_sent = None
            case Connected():
                self._connected = True
                log.info(
                    "connected to broker %s:%d, subscribed to %s",
                    self.config.mqtt.host,
                    self.config.mqtt.port,
                    self._topics.announce_filter,
                )
                self._status_sent = None
            case Disconnected(reason=reason):
                if self._connected:
                    log.warning("disconnected from the broker (%s); reconnecting", reason)
                self._connected = False
            case Stop(signal=signal.SIGHUP):
                log.warning("SIGHUP ignored: restart gatewayd to apply a changed configuration")
            case Stop(signal=signum) if not self._stopping:
                self._stopping = True
                log.info(
                    "signal %d: stopping; %d activation requests in flight are waited for "
                    "(a second signal stops at once, and their CIKs may be lost)",
                    signum,
                    self._outstanding,
                )
                self._execute(self._engine.handle(Drain()))
                self._exosite.close(timeout=0)
            case Stop(signal=signum):
                log.warning(
                    "signal %d again: stopping with %d activation requests in flight",
                    signum,
                    self._outstanding,
                )
                self._forced = True
            case _:
                self._execute(self._engine.handle(item))
        self._publish_status()

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

    # -------------------------------------------------------------- actions

    def _execute(self, actions: Iterable[Action]) -> None:
        todo = deque(actions)
        while todo:
            action = todo.popleft()
            match action:
                case StoreCik():
                    self._store(action)
                case SaveNode(node=node):
                    try:
                        self._state.save(node)
                    except StateError as exc:
                        log.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
                case Activate(sn=sn, vendor=vendor, model=model):
                    self._outstanding += 1
                    self._exosite.submit(sn, vendor, model)
                case LookupCik():
                    todo.extendleft(reversed(self._engine.handle(self._lookup(action))))
                case Publish():
                    self._publish(action)
                case Log():
                    logs.emit(action)

    def _lookup(self, action: LookupCik) -> CikLookedUp:
        try:
            cik = self._keystore.load(action.vendor, action.model, action.sn)
        except KeystoreError as exc:
            return CikLookedUp(action.sn, None, error=f"cannot read the keyring: {exc}")
        return CikLookedUp(action.sn, cik)

    def _store(self, action: StoreCik) -> None:
        """Store a CIK; until it is stored nothing else happens, for it exists nowhere else.

        While the keystore fails, no new activation request starts, so no
        further CIK is issued into a keystore that cannot keep it.
        """
        delay = 0.5
        while True:
            try:
                self._keystore.store(action.vendor, action.model, action.sn, action.cik)
            except Exception as exc:  # noqa: BLE001 (whatever a backend raises, the CIK stays)
                problem = str(exc) if isinstance(exc, KeystoreError) else type(exc).__name__
                self._exosite.pause()
                logs.emit(
                    Log(
                        "cik_unstored",
                        logging.CRITICAL,
                        f"CIK received but not stored ({problem}); retrying in {delay:.0f} s",
                        action.sn,
                    )
                )
                time.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_CAP)
            else:
                self._exosite.resume()
                return

    def _publish(self, action: Publish) -> None:
        answer = action.answer
        payload = protocol.encode_answer(answer)
        self._link.publish(self._topics.credentials(answer.sn), payload)
        for target in action.responses:
            self._link.publish(target.topic, payload, correlation=target.correlation)

    # --------------------------------------------------------------- status

    def _status_payload(self, state: str) -> bytes:
        body: dict[str, object] = {"state": state, "version": __version__}
        if state == "online":
            body["uptime"] = int(time.time() - self._started)
            body["nodes"] = {str(k): v for k, v in self._engine.counts().items()}
        return json.dumps(body, separators=(",", ":")).encode()

    def _status_due(self) -> float | None:
        if not self._connected or self._status_key() == self._status_sent:
            return None
        return self._status_at + STATUS_INTERVAL

    def _status_key(self) -> tuple[object, ...]:
        return tuple(self._engine.counts().values())

    def _publish_status(self) -> None:
        due = self._status_due()
        if due is None or (self._status_sent is not None and time.time() < due):
            return
        self._status_sent = self._status_key()
        self._status_at = time.time()
        self._link.publish(self._topics.status, self._status_payload("online"), retain=True)


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
