"""The broker link: paho-mqtt behind one small adapter, on 1.6.1 and on 2.x.

paho's network thread runs the connection. Its callbacks do nothing but hand
an event (:class:`Connected`, :class:`Disconnected`, :class:`Message`) to the
``deliver`` callable, which puts it on the daemon's queue. Publishing is safe
from any thread; QoS 1 messages published while the link is down are queued
by paho and sent after the reconnect.

The session is persistent (MQTT 5: clean start off with a session expiry;
MQTT 3.1.1: clean session off) under a fixed client id, so the broker keeps
announces for gatewayd while it is down.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import sys
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.config.schema import MqttConfig
from gatewayd.core.errors import MqttError
from gatewayd.core.events import Connected, Disconnected, LinkEvent, Message
from gatewayd.core.secret import Secret
from gatewayd.core.timers import backoff_ceiling

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

PAHO_2: Final = hasattr(paho, "CallbackAPIVersion")
RECONNECT_BASE: Final = 1.0
RECONNECT_CAP: Final = 60.0
RECONNECT_FLOOR: Final = 0.1
SUBACK_FAILURE: Final = 0x80
MAX_QUEUED: Final = 10_000
LOOP_WAIT: Final = 5.0
"""The longest paho's network thread waits for its socket (paho's own: 1 s)."""
"""QoS 1 messages paho keeps for a broker that is down; beyond it, publishes fail."""


def new_client(client_id: str, protocol: int = 5, *, persistent: bool = False) -> paho.Client:
    """A paho client with version-2 callbacks: the one place 1.6.1 and 2.x differ.

    ``persistent`` asks for a session the broker keeps (3.1.1: clean session
    off; for MQTT 5 it is chosen at connect time, with clean start).
    """
    kwargs: dict[str, Any] = {"client_id": client_id}
    if protocol == 5:
        kwargs["protocol"] = paho.MQTTv5
    else:
        kwargs["protocol"] = paho.MQTTv311
        kwargs["clean_session"] = not persistent
    if PAHO_2:
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2  # type: ignore[attr-defined]
    return paho.Client(**kwargs)


def _network_loop(client: paho.Client, wait: float) -> None:
    """The body of paho's network thread (``Client._thread_main``), with ``wait``."""
    try:
        client.loop_forever(timeout=wait, retry_first_connection=True)
    finally:
        setattr(client, "_thread", None)  # noqa: B010 (as paho's own thread body ends)


def release(client: paho.Client) -> None:
    """Close paho's wake-up socket pair now rather than when the client is collected.

    Every paho release closes it in ``_reset_sockets`` (1.6.1 to the newest 2.x);
    ``reinitialise()``, which calls it, cannot be used: on paho 2.1.0 (Debian 13) it
    builds the client again without a callback API version, and raises.
    """
    reset = getattr(client, "_reset_sockets", None)
    if callable(reset):
        reset()


def reason_code(value: object) -> int:
    """A paho reason code (int, ReasonCodes or ReasonCode) as an int."""
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, int) else -1


class MqttLink:
    """One connection to the broker, subscribed to every node's announce topic."""

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
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._config = config
        self._subscribe = subscribe
        self._deliver = deliver
        self._uniform = uniform
        self._failures = 0
        self._client = new_client(config.client_id, config.protocol, persistent=True)
        self._client.max_queued_messages_set(MAX_QUEUED)
        self._client.will_set(will_topic, will_payload, qos=1, retain=True)
        if config.username is not None:
            password_text = password.reveal() if password is not None else None
            self._client.username_pw_set(config.username, password_text)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._session_present = False
        self._client.on_connect_fail = self._on_connect_fail
        self._jitter_reconnect()

    # ---------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried forever."""
        connect: dict[str, Any] = {"keepalive": self._config.keepalive}
        if self._config.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._config.session_expiry
            connect |= {"clean_start": False, "properties": properties}
        try:
            self._client.connect_async(self._config.host, self._config.port, **connect)
        except ValueError as exc:
            raise MqttError(f"cannot connect to {self._config.host}: {exc}") from exc
        # paho's thread waits at most 1 s for the socket, which wakes an idle gateway once a
        # second: it waits up to LOOP_WAIT (a publish from another thread, or anything from
        # the broker, still wakes it at once; a disconnect ends it)
        wait = min(LOOP_WAIT, self._config.keepalive / 2)
        setattr(self._client, "_thread_main", functools.partial(_network_loop, self._client, wait))  # noqa: B010 (paho's thread body, by name)
        self._client.loop_start()

    def stop(self, last_topic: str, last_payload: bytes, timeout: float = 5.0) -> None:
        """Publish a last retained message (the offline status), then disconnect."""
        if self._client.is_connected():
            info = self._client.publish(last_topic, last_payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not delivered: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        release(self._client)

    # ------------------------------------------------------------ publish

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> bool:
        """Queue a QoS 1 message; False if paho's queue is full or the topic is invalid."""
        properties = None
        if correlation is not None and self._config.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        try:
            info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        except ValueError as exc:
            log.warning("cannot publish to %r: %s", topic[:120], exc)
            return False
        if reason_code(info.rc) == paho.MQTT_ERR_QUEUE_SIZE:
            log.error("publish to %s dropped: %d messages already queued", topic, MAX_QUEUED)
            return False
        return True

    # ---------------------------------------------------------- callbacks

    def _on_connect(
        self, client: paho.Client, _userdata: object, flags: object, *rest: object
    ) -> None:
        code = reason_code(rest[0])
        if code != 0:
            log.error("broker %s refused the connection: %s", self._config.host, rest[0])
            self._jitter_reconnect()
            return
        self._failures = 0
        present = flags.get("session present", 0) if isinstance(flags, dict) else None
        if present is None:
            present = getattr(flags, "session_present", False)
        self._session_present = bool(present)
        client.subscribe(self._subscribe, qos=1)

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
        self._deliver(Connected(session_present=self._session_present, subscribed=not refused))

    def _on_disconnect(self, _client: paho.Client, _userdata: object, *rest: object) -> None:
        reason = next((r for r in rest if hasattr(r, "getName") or isinstance(r, int)), None)
        self._jitter_reconnect()
        self._deliver(Disconnected(str(reason) if reason is not None else "unknown"))

    def _on_connect_fail(self, _client: paho.Client, _userdata: object) -> None:
        self._jitter_reconnect()
        # paho calls this from the handler of the connection's error: it says what failed
        error = sys.exc_info()[1]
        why = f": {error}" if error is not None else ""
        log.warning("broker %s:%d unreachable%s", self._config.host, self._config.port, why)

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

    def _jitter_reconnect(self) -> None:
        """Full jitter: paho's next wait is drawn below a cap that doubles per failure.

        paho resets its own doubling on every ``reconnect_delay_set``, so the
        delay is chosen here and given as both bounds.
        """
        ceiling = backoff_ceiling(self._failures + 1, RECONNECT_BASE, 2.0, RECONNECT_CAP)
        delay = max(RECONNECT_FLOOR, self._uniform(0.0, ceiling))
        self._failures += 1
        self._client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]
