"""What comes in from the broker before the engine sees it: bounds, limits, journal fields."""

from __future__ import annotations

import logging
import queue

import pytest

from gatewayd.config.schema import NodesConfig
from gatewayd.core import protocol
from gatewayd.core.events import BadAnnounce, LinkEvent, Message
from gatewayd.daemon.intake import MAX_BACKLOG_BYTES, Intake

TOPICS = protocol.Topics("gatewayd", "gw1")


@pytest.fixture
def waiting() -> queue.SimpleQueue[LinkEvent]:
    return queue.SimpleQueue()


def intake(waiting: queue.SimpleQueue[LinkEvent], **nodes: object) -> Intake:
    return Intake(TOPICS, NodesConfig(**nodes), waiting.put, waiting.qsize)  # type: ignore[arg-type]


def announce(sn: str, **fields: object) -> Message:
    return Message(TOPICS.announce(sn), b"", **fields)  # type: ignore[arg-type]


def test_a_serial_outside_sn_pattern_is_rate_limited_like_any_other(
    waiting: queue.SimpleQueue[LinkEvent],
) -> None:
    """Each is answered (invalid_request): without the limit, a flood is echoed back."""
    taken = intake(waiting, announce_rate=0.001, announce_burst=2)
    events = [taken.announce(announce("bad*serial")) for _ in range(5)]
    assert [type(e).__name__ for e in events] == ["BadAnnounce", "BadAnnounce", *["NoneType"] * 3]
    assert isinstance(events[0], BadAnnounce)
    assert events[0].sn == "bad*serial"
    assert taken.dropped == 3


def test_the_backlog_counts_response_topics_and_correlation_data(
    waiting: queue.SimpleQueue[LinkEvent],
) -> None:
    taken = intake(waiting)
    big = b"x" * (MAX_BACKLOG_BYTES // 4)
    for i in range(5):
        taken.receive(announce(f"SN{i}", correlation=big))
    assert waiting.qsize() == 4
    assert taken.overflowed == 1
    while not waiting.empty():  # taking them frees their room again
        message = waiting.get()
        assert isinstance(message, Message)
        taken.announce(message)
    taken.receive(announce("SN9", response_topic="gatewayd/nodes/SN9/" + "r" * 1000))
    assert waiting.qsize() == 1


def test_the_rate_limit_warning_carries_the_node_field(
    waiting: queue.SimpleQueue[LinkEvent], caplog: pytest.LogCaptureFixture
) -> None:
    taken = intake(waiting, announce_rate=0.001, announce_burst=1)
    taken.announce(announce("SN-R1"))
    taken.announce(announce("SN-R1"))
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.NODE_SN == "SN-R1"  # type: ignore[attr-defined]
