"""The broker link's answers connection: what gatewayd publishes, and whether the
broker acknowledges it.

Every publish is QoS 1 (credentials, MQTT 5 responses, the retained status). The
answers connection subscribes to nothing, so the broker's queue for it holds
nothing but acknowledgements. Each publish and each PUBACK is told to a
:class:`~gatewayd.core.acks.AckWatch`; :meth:`Answers.watch` (on the daemon's main
thread) says at ERROR, once per episode, when the broker has acknowledged none for
``[mqtt] keepalive`` seconds, and drops the connection so that paho reconnects and
sends the waiting publishes again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.adapters.connection import Connection, reason_code
from gatewayd.config.schema import MqttConfig
from gatewayd.core.acks import AckState, AckWatch, Turn

log = logging.getLogger(__name__)

MAX_QUEUED: Final = 10_000
"""QoS 1 messages paho keeps for a broker that is down; beyond it, publishes fail."""


class Answers:
    def __init__(
        self, config: MqttConfig, connection: Connection, clock: Callable[[], float]
    ) -> None:
        self.connection = connection
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()  # the watch is told from paho's thread and the caller's
        self._acks = AckWatch(float(config.keepalive))
        connection.client.max_queued_messages_set(MAX_QUEUED)
        connection.client.on_publish = self._on_publish

    def publish(
        self, topic: str, payload: bytes, *, retain: bool, correlation: bytes | None
    ) -> bool:
        """Queue a QoS 1 message; False if paho's queue is full or the topic is invalid."""
        properties = None
        if correlation is not None and self._config.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        try:
            info = self.connection.client.publish(
                topic, payload, qos=1, retain=retain, properties=properties
            )
        except ValueError as exc:
            log.warning("cannot publish to %r: %s", topic[:120], exc)
            return False
        if reason_code(info.rc) == paho.MQTT_ERR_QUEUE_SIZE:
            log.error("publish to %s dropped: %d messages already queued", topic, MAX_QUEUED)
            return False
        with self._lock:
            self._acks.sent(self._clock())
        return True

    def last(self, topic: str, payload: bytes, timeout: float) -> None:
        """Publish a last retained message (the offline status) and wait for its PUBACK."""
        client = self.connection.client
        if not client.is_connected():
            return
        info = client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            log.warning("offline status not delivered: %s", exc)

    def connected(self) -> None:
        with self._lock:
            self._acks.connected(self._clock())

    def disconnected(self) -> None:
        with self._lock:
            self._acks.disconnected()

    def due(self) -> float | None:
        """When :meth:`watch` next has something to check (monotonic), if ever."""
        with self._lock:
            return self._acks.due()

    def acks(self) -> AckState:
        """Publishes waiting for the broker, and how long they have stalled (if they have)."""
        with self._lock:
            return self._acks.state(self._clock())

    def watch(self) -> None:
        """Publishes unacknowledged for ``keepalive`` seconds: an error, said once per
        episode, and the connection made anew (paho sends them again); said again when
        the broker acknowledges again."""
        now = self._clock()
        with self._lock:
            before = self._acks.state(now)
            turn = self._acks.check(now)
        broker = f"{self._config.host}:{self._config.port}"
        stalled_for = before.stalled_for or 0.0
        if turn is Turn.STALLED:
            log.error(
                "broker %s has acknowledged none of gatewayd's publishes for %.0f s "
                "(%d waiting): answers and status are not getting through; reconnecting",
                broker,
                self._acks.bound,
                before.waiting,
            )
            self.connection.drop()
        elif turn is Turn.STILL:
            log.warning(
                "broker %s: publishes still unacknowledged after %.0f s (%d waiting); "
                "reconnecting again",
                broker,
                stalled_for,
                before.waiting,
            )
            self.connection.drop()
        elif turn is Turn.RECOVERED:
            log.warning(
                "broker %s acknowledges gatewayd's publishes again, after %.0f s without",
                broker,
                stalled_for,
            )

    def _on_publish(self, _client: paho.Client, _userdata: object, *_rest: object) -> None:
        """The broker acknowledged a QoS 1 publish (only those leave this connection)."""
        with self._lock:
            self._acks.acked(self._clock())
