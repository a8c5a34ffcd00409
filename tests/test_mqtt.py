"""The broker link against a real mosquitto, on whichever paho-mqtt is installed."""

from __future__ import annotations

import importlib
import logging
import queue
from collections.abc import Callable, Iterator

import pytest
from conftest import WAIT
from paho.mqtt.packettypes import PacketTypes

from gatewayd.adapters.mqtt import Connected, Disconnected, LinkEvent, Message, MqttLink
from gatewayd.config.schema import MqttConfig
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.mqtt

STATUS = "gatewayd/gateway/t/status"


def next_of(events: queue.Queue[LinkEvent], kind: type, timeout: float = WAIT) -> LinkEvent:
    """The next event of a kind, skipping others (a reconnect may say Disconnected twice)."""
    while True:
        event = events.get(timeout=timeout)
        if isinstance(event, kind):
            return event


def make_link(
    port: int,
    protocol: int = 5,
    deliver: Callable[[LinkEvent], None] = lambda _event: None,
    uniform: Callable[[float, float], float] = lambda low, high: (low + high) / 2,
) -> MqttLink:
    config = MqttConfig(
        host="127.0.0.1", port=port, client_id="gatewayd-t", protocol=protocol, keepalive=5
    )
    return MqttLink(
        config,
        subscribe="gatewayd/nodes/+/announce",
        will_topic=STATUS,
        will_payload=b'{"state":"offline"}',
        password=None,
        deliver=deliver,
        uniform=uniform,
    )


@pytest.fixture(params=[5, 4], ids=["mqtt5", "mqtt311"])
def link(
    request: pytest.FixtureRequest, broker: Broker
) -> Iterator[tuple[MqttLink, queue.Queue[LinkEvent]]]:
    events: queue.Queue[LinkEvent] = queue.Queue()
    mqtt_link = make_link(broker.port, request.param, events.put)
    mqtt_link.start()
    yield mqtt_link, events
    mqtt_link.stop(STATUS, b'{"state":"offline"}', timeout=2)


def test_subscribed_then_messages_arrive(
    link: tuple[MqttLink, queue.Queue[LinkEvent]], node: Callable[..., SimulatedNode]
) -> None:
    _, events = link
    assert isinstance(next_of(events, Connected), Connected)
    n = node("SN1")
    n.announce()
    message = next_of(events, Message)
    assert isinstance(message, Message)
    assert message.topic == "gatewayd/nodes/SN1/announce"
    assert b'"sn": "SN1"' in message.payload


def test_response_topic_and_correlation_reach_the_event(
    broker: Broker,
    link: tuple[MqttLink, queue.Queue[LinkEvent]],
    node: Callable[..., SimulatedNode],
) -> None:
    mqtt_link, events = link
    next_of(events, Connected)
    n = node("SN2")
    n.publish(n.announce_topic, b"", response_topic="gatewayd/nodes/SN2/r", correlation=b"\x01\x02")
    message = next_of(events, Message)
    assert isinstance(message, Message)
    if mqtt_link._config.protocol == 5:
        assert (message.response_topic, message.correlation) == (
            "gatewayd/nodes/SN2/r",
            b"\x01\x02",
        )
    else:
        assert (message.response_topic, message.correlation) == (None, None)


def test_reconnects_and_delivers_what_was_queued_while_down(
    broker: Broker,
    link: tuple[MqttLink, queue.Queue[LinkEvent]],
    node: Callable[..., SimulatedNode],
) -> None:
    mqtt_link, events = link
    next_of(events, Connected)
    broker.stop()
    assert isinstance(next_of(events, Disconnected), Disconnected)
    queued = "gatewayd/nodes/SN3/queued"
    assert mqtt_link.publish(queued, b'{"status":"pending"}', retain=True)
    broker.start()
    assert isinstance(next_of(events, Connected), Connected)
    n = node("SN3")
    n.subscribe(queued)
    received = n.next_answer()
    assert (received.topic, received.body) == (queued, {"status": "pending"})
    n.announce()
    message = next_of(events, Message)
    assert isinstance(message, Message)
    assert message.topic == "gatewayd/nodes/SN3/announce"


def test_reconnect_waits_have_full_jitter_below_a_doubling_cap() -> None:
    draws: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        draws.append((low, high))
        return high / 2

    link = make_link(1, uniform=record)
    for _ in range(8):
        link._on_connect_fail(link._announces, link._announces.client, None)
    ceilings = [high for _low, high in draws]
    # a first draw for each of the two connections, then the announces connection's failures
    assert ceilings == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert all(low == 0.0 for low, _high in draws)


def suback_code(value: int) -> object:
    """A SUBACK reason code as the installed paho hands it to on_subscribe."""
    codes = importlib.import_module("paho.mqtt.reasoncodes")
    kind = getattr(codes, "ReasonCode", None) or codes.ReasonCodes
    return kind(PacketTypes.SUBACK, identifier=value)


@pytest.mark.parametrize(
    ("granted", "subscribed"),
    [
        ((1,), True),  # MQTT 3.1.1: granted QoS 1
        ((0x80,), False),  # MQTT 3.1.1: failure
        ("v5-granted", True),
        ("v5-not-authorized", False),
    ],
)
def test_the_suback_decides_whether_gatewayd_is_subscribed(
    granted: object, subscribed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    if granted == "v5-granted":
        granted = [suback_code(1)]
    elif granted == "v5-not-authorized":
        granted = [suback_code(0x87)]
    events: queue.Queue[LinkEvent] = queue.Queue()
    link = make_link(1, deliver=events.put)
    with caplog.at_level(logging.ERROR, logger="gatewayd.adapters.mqtt"):
        link._on_answers_connect(link._answers.connection.client, None, {}, 0)
        link._on_subscribe(link._announces.client, None, 1, granted)
    assert events.get_nowait() == Connected(session_present=False, subscribed=subscribed)
    assert ("refused the subscription" in caplog.text) is not subscribed
