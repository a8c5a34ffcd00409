"""The watch on the broker's acknowledgements, on a clock the test moves: no broker."""

from __future__ import annotations

import pytest

from gatewayd.core.acks import AckState, AckWatch, Turn

BOUND = 10.0


def connected_watch(now: float = 0.0) -> AckWatch:
    watch = AckWatch(BOUND)
    watch.connected(now)
    return watch


def test_nothing_waiting_is_never_a_stall() -> None:
    watch = connected_watch()
    assert watch.due() is None
    assert watch.check(1_000.0) is None
    assert watch.state(1_000.0) == AckState(0, None)


def test_a_publish_unacknowledged_for_the_bound_is_a_stall_said_once() -> None:
    watch = connected_watch()
    watch.sent(100.0)
    assert watch.due() == 100.0 + BOUND
    assert watch.check(109.9) is None
    assert watch.check(110.0) is Turn.STALLED
    assert watch.state(115.0) == AckState(1, 15.0)
    assert watch.check(115.0) is None  # the same episode
    assert watch.due() == 120.0
    assert watch.check(120.0) is Turn.STILL  # reconnect again, quietly
    assert watch.check(125.0) is None


def test_the_clock_runs_from_the_last_acknowledgement_not_the_first_publish() -> None:
    watch = connected_watch()
    watch.sent(0.0)
    watch.sent(1.0)
    watch.acked(8.0)  # the broker makes progress: the second one gets its own bound
    assert watch.check(12.0) is None
    assert watch.due() == 18.0
    assert watch.check(18.0) is Turn.STALLED


def test_an_acknowledgement_ends_the_episode_and_is_said_at_once() -> None:
    watch = connected_watch()
    watch.sent(0.0)
    watch.sent(0.0)
    assert watch.check(10.0) is Turn.STALLED
    watch.acked(14.0)
    due = watch.due()
    assert due is not None
    assert due <= 14.0  # due now: the recovery is said without waiting
    assert watch.check(14.0) is Turn.RECOVERED
    assert watch.state(14.0) == AckState(1, None)
    assert watch.check(24.0) is Turn.STALLED  # a new episode for the one still waiting


def test_a_reconnect_alone_is_no_recovery_but_restarts_the_bound() -> None:
    watch = connected_watch()
    watch.sent(0.0)
    assert watch.check(10.0) is Turn.STALLED
    watch.disconnected()
    assert watch.due() is None
    assert watch.check(100.0) is None  # nothing is said while down
    watch.connected(100.0)
    assert watch.check(100.0) is None
    assert watch.stalled
    assert watch.check(110.0) is Turn.STILL


def test_while_disconnected_nothing_is_overdue_and_a_connect_gives_a_fresh_bound() -> None:
    watch = AckWatch(BOUND)
    watch.sent(0.0)  # queued by paho while the broker is away
    assert watch.due() is None
    assert watch.check(500.0) is None
    watch.connected(500.0)
    assert watch.check(509.0) is None
    assert watch.check(510.0) is Turn.STALLED


def test_an_acknowledgement_that_overtakes_its_publish_is_counted_right() -> None:
    watch = connected_watch()
    watch.acked(5.0)  # paho's thread saw the PUBACK before the caller counted the publish
    watch.sent(5.0)
    assert watch.waiting == 0
    assert watch.check(100.0) is None


def test_nothing_left_waiting_ends_an_episode() -> None:
    watch = connected_watch()
    watch.sent(0.0)
    assert watch.check(10.0) is Turn.STALLED
    watch.acked(11.0)
    assert watch.check(11.0) is Turn.RECOVERED
    assert watch.check(100.0) is None


def test_the_bound_is_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AckWatch(0.0)
