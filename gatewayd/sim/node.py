"""A simulated sensor node that follows the node-facing MQTT contract.

It subscribes to its credentials topic first, then announces, and
re-announces with backoff until it gets a final answer (``activated`` or
``rejected``). It rides out a broker restart: paho reconnects by itself, the
node subscribes again on every connect (a restarted broker has forgotten its
subscriptions), and an announce published while the link is down is queued
by paho (QoS 1) and sent after the reconnect. Firmware developers can read it
as a reference client; the demo and gatewayd's own tests drive it.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.adapters.mqtt import new_client, reason_code, release

FINAL = frozenset({"activated", "rejected"})
_PUBACK_POLL: Final = 0.1
"""How often a wait for a PUBACK checks that the link is still up."""


@dataclass(frozen=True, slots=True)
class Received:
    """One answer the node received."""

    topic: str
    body: dict[str, Any]
    correlation: bytes | None = None


class NodeTimeoutError(TimeoutError):
    """No answer arrived in time."""


class SimulatedNode:
    """One node's MQTT client. Use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        sn: str,
        *,
        prefix: str = "gatewayd",
        protocol: int = 5,
        client_id: str | None = None,
        on_answer: Callable[[SimulatedNode, Received], None] | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``on_answer``, if given, is called (on paho's thread) with every answer received.

        ``username``, ``password`` and ``tls`` are for a broker that authenticates its
        clients, such as the one in examples/mosquitto/.
        """
        self.sn = sn
        self.prefix = prefix
        self.credentials_topic = f"{prefix}/nodes/{sn}/credentials"
        self.announce_topic = f"{prefix}/nodes/{sn}/announce"
        self._host = host
        self._port = port
        self._protocol = protocol
        self._on_answer = on_answer
        self._answers: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._ready = threading.Event()  # connected, and the credentials topic subscribed
        self._lock = threading.Condition()
        self._topics: list[str] = [self.credentials_topic]
        self._acked: set[int] = set()
        self._resubscribe_mid: int | None = None
        self._client = new_client(client_id or f"node-{sn}"[:64], protocol)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """The broker accepted the connection and it has not been lost since."""
        return self._connected.is_set()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and subscribe to the credentials topic, before any announce."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._ready.wait(timeout):
            if not self._connected.is_set():
                raise NodeTimeoutError(f"{self.sn}: no CONNACK from {self._host}:{self._port}")
            raise NodeTimeoutError(f"{self.sn}: no SUBACK for {self.credentials_topic}")

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        """Subscribe (QoS 1), now and after every reconnect, and wait for the SUBACK."""
        with self._lock:
            if topic not in self._topics:
                self._topics.append(topic)
        rc, mid = self._client.subscribe(topic, qos=1)
        if reason_code(rc) == paho.MQTT_ERR_NO_CONN:
            # the next connect subscribes to every topic of the node, this one included
            if not self._ready.wait(timeout):
                raise NodeTimeoutError(f"{self.sn}: no SUBACK for {topic}")
            return
        with self._lock:
            if not self._lock.wait_for(lambda: mid in self._acked, timeout):
                raise NodeTimeoutError(f"{self.sn}: no SUBACK for {topic}")
            self._acked.discard(mid)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        # paho keeps its wake-up socket pair open until the client is collected
        # (a test may run hundreds of nodes)
        release(self._client)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        timeout: float = 10.0,
        wait: bool = True,
    ) -> None:
        """Publish at QoS 1 and, with ``wait``, wait (at most ``timeout``) until the broker has it.

        While the link is down nothing is waited for and nothing is raised:
        paho keeps the message and sends it after the reconnect.
        """
        properties = None
        if self._protocol == 5 and (response_topic or correlation):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if reason_code(info.rc) == paho.MQTT_ERR_NO_CONN or not wait:
            return
        deadline = time.monotonic() + timeout
        while not info.is_published() and self._connected.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            info.wait_for_publish(min(left, _PUBACK_POLL))

    def announce(
        self,
        model: str | None = None,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        wait: bool = True,
    ) -> None:
        """Announce the serial (and ``model``); see :meth:`publish` for ``wait``."""
        body: dict[str, str] = {"sn": self.sn}
        if model is not None:
            body["model"] = model
        payload = json.dumps(body).encode()
        self.publish(
            self.announce_topic,
            payload,
            response_topic=response_topic,
            correlation=correlation,
            wait=wait,
        )

    def next_answer(self, timeout: float = 10.0) -> Received:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            raise NodeTimeoutError(f"{self.sn}: no answer within {timeout:g} s") from None

    def activate(self, model: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Announce, and re-announce with backoff, until a final answer arrives.

        A broker outage meanwhile is ridden out: announces wait in paho's queue.
        """
        deadline = time.monotonic() + timeout
        wait = 1.0
        self.announce(model)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NodeTimeoutError(f"{self.sn}: no final answer within {timeout:g} s")
            try:
                answer = self.next_answer(min(wait, left))
            except NodeTimeoutError:
                wait = min(wait * 2, 30.0)
                self.announce(model)
                continue
            if answer.topic == self.credentials_topic and answer.body.get("status") in FINAL:
                return answer.body

    # ------------------------------------------------------------ callbacks
    # paho 2.x (version-2 callbacks) and 1.6.1 pass different arguments after
    # (client, userdata); the ones used here sit at the same places in both.

    def _on_connect(self, client: paho.Client, _userdata: object, *rest: object) -> None:
        if reason_code(rest[1]) != 0:
            return
        self._connected.set()
        with self._lock:
            topics = [(topic, 1) for topic in self._topics]
        # a restarted broker has forgotten the node's subscriptions: subscribe again
        _rc, mid = client.subscribe(topics)
        with self._lock:
            self._resubscribe_mid = mid

    def _on_disconnect(self, _client: paho.Client, _userdata: object, *_rest: object) -> None:
        self._ready.clear()
        self._connected.clear()

    def _on_subscribe(self, _client: paho.Client, _userdata: object, *rest: object) -> None:
        mid = rest[0]
        with self._lock:
            if mid == self._resubscribe_mid:
                self._resubscribe_mid = None
                self._ready.set()
            elif isinstance(mid, int):
                self._acked.add(mid)
                self._lock.notify_all()

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:  # noqa: ANN401 (paho's message type differs between versions)
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = {"unparsed": message.payload.decode("utf-8", "replace")}
        properties = getattr(message, "properties", None)
        correlation = getattr(properties, "CorrelationData", None)
        answer = Received(message.topic, body, bytes(correlation) if correlation else None)
        self._answers.put(answer)
        if self._on_answer is not None:
            self._on_answer(self, answer)
