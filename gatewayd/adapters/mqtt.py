"""The broker link: paho-mqtt behind one small adapter, on 1.6.1 and on 2.x.

The link is two connections, each run by its own paho network thread:

- the *announces* connection subscribes to every node's announce topic and
  publishes nothing. Its session is persistent (MQTT 5: clean start off with a
  session expiry; MQTT 3.1.1: clean session off) under ``[mqtt] client_id``, so
  the broker keeps announces for gatewayd while it is down.
- the *answers* connection publishes the credentials and the status topic (it
  carries the will) and subscribes to nothing, under ``<client_id>-answers``.
  A broker writes a client's packets in order, and drops them when that client's
  queue is full (mosquitto 2.0.16 and later drop any packet then, PUBACKs
  included): on a connection of their own, the broker's acknowledgements of
  gatewayd's publishes never wait behind, or get dropped with, a flood of
  announces.

The callbacks do nothing but hand an event (:class:`Connected` once both
connections are up, :class:`Disconnected` when one goes down, :class:`Message`)
to the ``deliver`` callable, which puts it on the daemon's queue. Publishing is
safe from any thread; QoS 1 messages published while the answers connection is
down are queued by paho and sent after the reconnect.

The daemon's main thread calls :meth:`MqttLink.watch` (when :meth:`MqttLink.due`
says): publishes the broker has stopped acknowledging for ``keepalive`` seconds
are an error, and the answers connection is made anew
(:mod:`gatewayd.adapters.answers`). Each paho client, and what 1.6.1 and 2.x
differ in, is :mod:`gatewayd.adapters.connection`'s.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.adapters.answers import Answers
from gatewayd.adapters.connection import (
    SESSION_TAKEN_OVER,
    TAKEN_OVER_AFTER,
    Connection,
    new_client,
    reason_code,
    release,
)
from gatewayd.config.schema import MqttConfig
from gatewayd.core.acks import AckState
from gatewayd.core.events import Connected, Disconnected, LinkEvent, Message
from gatewayd.core.secret import Secret

log = logging.getLogger(__name__)

__all__ = [
    "Connected",
    "Disconnected",
    "LinkEvent",
    "Message",
    "MqttLink",
    "new_client",
    "reason_code",
    "release",
]

SUBACK_FAILURE: Final = 0x80
RECEIVE_MAXIMUM: Final = 65535


class MqttLink:
    """The broker: an announces connection that subscribes, an answers connection that
    publishes."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        subscribe: str,
        will_topic: str,
        will_payload: bytes,
        password: Secret | None,
        deliver: Callable[[LinkEvent], None],
        tls: ssl.SSLContext | None = None,
        answers_tls: ssl.SSLContext | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``answers_tls``: the answers connection's TLS context, if not ``tls`` (a client
        certificate of its own)."""
        self._config = config
        self._subscribe = subscribe
        self._deliver = deliver
        self._clock = clock
        self._lock = threading.Lock()
        self._session_present = False
        self._subscribed = False
        self._told_shared_id = False
        password_text = password.reveal() if password is not None else None

        announces = new_client(config.client_id, config.protocol, persistent=True)
        if config.username is not None:
            announces.username_pw_set(config.username, password_text)
        if tls is not None:
            announces.tls_set_context(tls)
        announces.on_connect = self._on_connect
        announces.on_subscribe = self._on_subscribe
        announces.on_message = self._on_message
        self._announces = Connection("announces", announces, config, uniform)
        announces.on_disconnect = functools.partial(self._on_disconnect, self._announces)
        announces.on_connect_fail = functools.partial(self._on_connect_fail, self._announces)

        answers = new_client(f"{config.client_id}-answers", config.protocol)
        answers.will_set(will_topic, will_payload, qos=1, retain=True)
        username = config.answers_username or config.username
        if username is not None:
            answers.username_pw_set(username, password_text)
        answers_context = answers_tls if answers_tls is not None else tls
        if answers_context is not None:
            answers.tls_set_context(answers_context)
        answers.on_connect = self._on_answers_connect
        self._answers = Answers(config, Connection("answers", answers, config, uniform), clock)
        answers.on_disconnect = functools.partial(self._on_disconnect, self._answers.connection)
        answers.on_connect_fail = functools.partial(self._on_connect_fail, self._answers.connection)

    # ---------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried forever."""
        announces: dict[str, Any] = {"keepalive": self._config.keepalive}
        answers: dict[str, Any] = {"keepalive": self._config.keepalive}
        if self._config.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._config.session_expiry
            # MQTT 5's own default, said out loud: mosquitto otherwise allows only
            # max_inflight_messages (20) unacknowledged QoS 1 messages towards gatewayd, and
            # counts one that it dropped from a full queue as unacknowledged until the next
            # connect: 20 such drops in a flood and no QoS 1 announce would reach gatewayd
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
            announces |= {"clean_start": False, "properties": properties}
            answers |= {"clean_start": True}
        self._answers.connection.start(**answers)
        self._announces.start(**announces)

    def stop(self, last_topic: str, last_payload: bytes, timeout: float = 5.0) -> None:
        """Publish a last retained message (the offline status), then disconnect."""
        self._answers.last(last_topic, last_payload, timeout)
        self._announces.stop()
        self._answers.connection.stop()

    # ------------------------------------------------------------ publish

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> bool:
        """Queue a QoS 1 message on the answers connection; False if it is not queued."""
        return self._answers.publish(topic, payload, retain=retain, correlation=correlation)

    def due(self) -> float | None:
        """When :meth:`watch` next has something to check (monotonic), if ever."""
        return self._answers.due()

    def acks(self) -> AckState:
        """Publishes waiting for the broker, and how long they have stalled (if they have)."""
        return self._answers.acks()

    def watch(self) -> None:
        """See :meth:`gatewayd.adapters.answers.Answers.watch`."""
        self._answers.watch()

    # ---------------------------------------------------------- callbacks

    def _on_connect(
        self, client: paho.Client, _userdata: object, flags: object, *rest: object
    ) -> None:
        """The announces connection: subscribe (it is up once the broker answers)."""
        if not self._accepted(self._announces, rest[0]):
            return
        present = flags.get("session present", 0) if isinstance(flags, dict) else None
        if present is None:
            present = getattr(flags, "session_present", False)
        self._session_present = bool(present)
        client.subscribe(self._subscribe, qos=1)

    def _on_answers_connect(
        self, _client: paho.Client, _userdata: object, _flags: object, *rest: object
    ) -> None:
        if not self._accepted(self._answers.connection, rest[0]):
            return
        self._answers.connected()
        self._up(self._answers.connection)

    def _accepted(self, connection: Connection, code: object) -> bool:
        if reason_code(code) != 0:
            log.error(
                "broker %s refused the connection (%s): %s",
                self._config.host,
                connection.name,
                code,
            )
            connection.jitter_reconnect()
            return False
        connection.succeeded(self._clock())
        return True

    def _on_subscribe(self, _client: paho.Client, _userdata: object, *rest: object) -> None:
        granted = rest[1] if len(rest) > 1 and isinstance(rest[1], list | tuple) else ()
        refused = [code for code in map(reason_code, granted) if code >= SUBACK_FAILURE]
        if refused:
            log.error(
                "broker %s refused the subscription to %s (reason code %#x): check its ACL",
                self._config.host,
                self._subscribe,
                refused[0],
            )
        self._subscribed = not refused
        self._up(self._announces)

    def _up(self, connection: Connection) -> None:
        """One connection is up: the link is, once both are."""
        with self._lock:
            connection.up = True
            both = self._announces.up and self._answers.connection.up
        if both:
            self._told_shared_id = False
            self._deliver(Connected(self._session_present, subscribed=self._subscribed))

    def _on_disconnect(
        self, connection: Connection, _client: paho.Client, _userdata: object, *rest: object
    ) -> None:
        reason = next((r for r in rest if hasattr(r, "getName") or isinstance(r, int)), None)
        connection.lost(self._clock())
        with self._lock:
            connection.up = False
            if connection is self._answers.connection:
                self._answers.disconnected()
            # each connection accepted, then closed at once, in turn: they take each other's id
            flapping = min(self._answers.connection.short_lived, self._announces.short_lived)
        connection.jitter_reconnect()
        taken = reason is not None and reason_code(reason) == SESSION_TAKEN_OVER
        if (taken or flapping >= TAKEN_OVER_AFTER) and not self._told_shared_id:
            self._told_shared_id = True  # once, until both connections are up
            what = (
                f"closed the {connection.name} connection: another client took its client id"
                if taken
                else "keeps closing gatewayd's two connections, each as the other connects: "
                "they seem to have one client id"
            )
            log.error(
                "broker %s %s; if the broker names clients after their user name (mosquitto's "
                "use_username_as_clientid), give the answers connection an account of its own "
                "(mqtt.answers_username)",
                self._config.host,
                what,
            )
        said = str(reason) if reason is not None else "unknown"
        self._deliver(Disconnected(f"{connection.name} connection: {said}"))

    def _on_connect_fail(
        self, connection: Connection, _client: paho.Client, _userdata: object
    ) -> None:
        connection.jitter_reconnect()
        # paho calls this from the handler of the connection's error: it says what failed
        error = sys.exc_info()[1]
        why = f": {error}" if error is not None else ""
        # both connections fail alike: the announces connection says so
        level = logging.WARNING if connection is self._announces else logging.DEBUG
        log.log(level, "broker %s:%d unreachable%s", self._config.host, self._config.port, why)

    def _on_message(
        self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage
    ) -> None:
        properties = getattr(message, "properties", None)
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        self._deliver(
            Message(
                topic=message.topic,
                payload=bytes(message.payload),
                response_topic=response_topic if isinstance(response_topic, str) else None,
                correlation=bytes(correlation) if correlation is not None else None,
            )
        )
