"""The per-node announce limit, with a fake clock."""

from __future__ import annotations

from conftest import FakeClock

from gatewayd.core.limits import MAX_TRACKED, WARN_WINDOW, AnnounceLimiter, Verdict


def test_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = AnnounceLimiter(rate=1.0, burst=3, clock=clock)
    assert [limiter.allow("A").allowed for _ in range(4)] == [True, True, True, False]
    clock.advance(1.0)
    assert limiter.allow("A").allowed
    assert not limiter.allow("A").allowed
    assert limiter.allow("B").allowed  # every node has its own bucket
    assert limiter.dropped == 2


def test_one_warning_per_node_per_window_with_the_count() -> None:
    clock = FakeClock()
    limiter = AnnounceLimiter(rate=0.001, burst=1, clock=clock)
    limiter.allow("A")
    verdicts = [limiter.allow("A") for _ in range(5)]
    assert verdicts[0] == Verdict(allowed=False, warn=True, dropped=1)
    assert all(v == Verdict(allowed=False) for v in verdicts[1:])
    clock.advance(WARN_WINDOW)
    assert limiter.allow("A") == Verdict(allowed=False, warn=True, dropped=5)


def test_memory_is_bounded_by_the_serials_it_tracks() -> None:
    clock = FakeClock()
    limiter = AnnounceLimiter(rate=1.0, burst=1, clock=clock)
    for i in range(MAX_TRACKED + 500):
        limiter.allow(f"SN{i}")
    assert len(limiter._buckets) == MAX_TRACKED
    assert limiter.allow(f"SN{MAX_TRACKED + 499}").allowed is False  # recent: still tracked
    assert limiter.allow("SN0").allowed  # the oldest was forgotten: a full bucket again
