"""A simulated sensor node that follows the node-facing MQTT contract.

It subscribes to its credentials topic first, then announces, and
re-announces with backoff until it gets a final answer (``activated`` or
``rejected``). Firmware developers can read it as a reference client; the
demo and gatewayd's own tests drive it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Self

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.mqtt import new_client

FINAL = frozenset({"activated", "rejected"})


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
    ) -> None:
        self.sn = sn
        self.prefix = prefix
        self.credentials_topic = f"{prefix}/nodes/{sn}/credentials"
        self.announce_topic = f"{prefix}/nodes/{sn}/announce"
        self._host = host
        self._port = port
        self._protocol = protocol
        self._answers: queue.Queue[Received] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._client = new_client(client_id or f"node-{sn}"[:64], protocol)
        self._client.on_connect = lambda *_args: self._connected.set()
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.on_message = self._on_message

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and subscribe to the credentials topic, before any announce."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise NodeTimeoutError(f"{self.sn}: no CONNACK from {self._host}:{self._port}")
        self.subscribe(self.credentials_topic, timeout)

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        self._subscribed.clear()
        self._client.subscribe(topic, qos=1)
        if not self._subscribed.wait(timeout):
            raise NodeTimeoutError(f"{self.sn}: no SUBACK for {topic}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Publish at QoS 1 and wait until the broker has it."""
        properties = None
        if self._protocol == 5 and (response_topic or correlation):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(timeout)

    def announce(
        self,
        model: str | None = None,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        body: dict[str, str] = {"sn": self.sn}
        if model is not None:
            body["model"] = model
        payload = json.dumps(body).encode()
        self.publish(
            self.announce_topic, payload, response_topic=response_topic, correlation=correlation
        )

    def next_answer(self, timeout: float = 10.0) -> Received:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            raise NodeTimeoutError(f"{self.sn}: no answer within {timeout:g} s") from None

    def activate(self, model: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Announce, and re-announce with backoff, until a final answer arrives."""
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

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:  # noqa: ANN401 (paho's message type differs between versions)
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = {"unparsed": message.payload.decode("utf-8", "replace")}
        properties = getattr(message, "properties", None)
        correlation = getattr(properties, "CorrelationData", None)
        self._answers.put(
            Received(message.topic, body, bytes(correlation) if correlation else None)
        )
