"""A bundle's entries imported into the running engine (:mod:`gatewayd.core.imports`), and
the entries themselves (:mod:`gatewayd.core.entries`): pure, with an injected clock."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from conftest import FakeClock as Clock

from gatewayd.core.actions import (
    Action,
    Log,
    LookupCik,
    Publish,
    Result,
    RetireCik,
    SaveNode,
    StoreCik,
)
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, entry, node_of
from gatewayd.core.events import ActivationAnswered, Announced, Imported, Refused, Tick
from gatewayd.core.model import Node, Reason, Settings, State
from gatewayd.core.secret import Secret

SETTINGS = Settings(vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1"}))
OLD, NEW = Secret("a" * 40), Secret("b" * 40)


def upper(_low: float, high: float) -> float:
    return high


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


def activated(clock: Clock, sn: str = "SN1") -> Node:
    """The record a bundle holds for a node activated an hour ago elsewhere."""
    return Node(sn, "acme", "thermo-v1", State.ACTIVATED, clock.now - 7200, 1, None,
                activated_at=clock.now - 3600)  # fmt: skip


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ if not isinstance(a, Log) else f"Log:{a.kind}" for a in actions]


def result(actions: list[Action]) -> Result:
    (found,) = [a for a in actions if isinstance(a, Result)]
    return found


def test_a_node_unknown_here_is_taken_cik_first(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    node = activated(clock)
    actions = engine.handle(Imported(node, OLD, None))
    assert kinds(actions) == ["StoreCik", "SaveNode", "Log:imported", "Result"]
    assert actions[0] == StoreCik("SN1", "acme", "thermo-v1", OLD)
    assert actions[1] == SaveNode(node)
    assert result(actions) == Result(ok=True, message="SN1: imported")
    assert engine.node("SN1") == node
    assert engine.next_deadline() is None  # activated: no expiry warning is armed


def test_a_node_waiting_for_its_credentials_is_sent_them(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(404)))
    assert engine.node("SN1").state is State.REJECTED  # type: ignore[union-attr]
    actions = engine.handle(Imported(activated(clock), OLD, None))
    assert kinds(actions) == ["StoreCik", "SaveNode", "Log:imported", "Publish", "Result"]
    (told,) = [a for a in actions if isinstance(a, Publish)]
    assert (told.answer.status, told.answer.cik) == ("activated", OLD)
    assert engine.node("SN1") == activated(clock)
    assert engine.counts()[State.REJECTED] == 0


def test_a_node_with_a_request_in_flight_is_not_imported(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    engine.handle(Announced("SN1"))
    before = engine.node("SN1")
    actions = engine.handle(Imported(activated(clock), OLD, None))
    assert actions == [
        Result(
            ok=False,
            message="SN1: not imported: a request about it is under way; import it again later",
        )
    ]
    assert engine.node("SN1") == before


def test_the_same_cik_stored_leaves_the_node_as_it_is(clock: Clock) -> None:
    here = dataclasses.replace(activated(clock), activated_at=clock.now)
    engine = Engine(SETTINGS, [here], clock, upper)
    actions = engine.handle(Imported(activated(clock), OLD, OLD))
    assert actions == [Result(ok=True, message="SN1: already held, unchanged")]
    assert engine.node("SN1") == here


def test_a_differing_cik_is_kept_unless_the_bundle_is_preferred(clock: Clock) -> None:
    here = activated(clock)
    engine = Engine(SETTINGS, [here], clock, upper)
    kept = engine.handle(Imported(activated(clock), NEW, OLD))
    assert kinds(kept) == ["Result"]
    assert not result(kept).ok
    assert "kept as stored" in result(kept).message
    taken = engine.handle(Imported(activated(clock), NEW, OLD, prefer_bundle=True))
    assert kinds(taken) == ["RetireCik", "StoreCik", "SaveNode", "Log:imported", "Result"]
    assert taken[0] == RetireCik("SN1", "acme", "thermo-v1")
    assert taken[1] == StoreCik("SN1", "acme", "thermo-v1", NEW)
    assert not [a for a in taken if isinstance(a, Publish)]  # it holds a CIK: asked, it is told


def test_a_record_left_activating_is_finished_as_at_start(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    node = Node("SN1", "acme", "thermo-v1", State.ACTIVATING, clock.now - 60, 1)
    actions = engine.handle(Imported(node, None, None))
    assert kinds(actions) == ["SaveNode", "Log:imported", "Result", "LookupCik"]
    assert actions[-1] == LookupCik("SN1", "acme", "thermo-v1")
    assert engine.node("SN1").state is State.RECOVERING  # type: ignore[union-attr]


def test_a_rejected_record_is_held_from_its_own_rejection_time(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    node = Node(
        "SN1", "acme", "thermo-v1", State.REJECTED, clock.now - 600,
        reason=Reason.UNKNOWN_SERIAL, http_status=404, rejected_at=clock.now - 600,
    )  # fmt: skip
    engine.handle(Imported(node, None, None))
    deadline = engine.next_deadline()
    assert deadline is not None  # its expiry warning, 24 h after it was first seen
    assert deadline == pytest.approx(clock.now - 600 + 24 * 3600)
    assert engine.handle(Tick()) == []


# -------------------------------------------------------------------- entries


def test_an_entry_holds_every_field_and_comes_back_the_same(clock: Clock) -> None:
    node = Node(
        "SN1", "acme", "thermo-v1", State.REJECTED, clock.now, 3, clock.now + 5, "HTTP 404",
        Reason.UNKNOWN_SERIAL, 404, clock.now, None, expiry_warned=True,
        request_started=clock.now, request_form="onep", uncertain=True,
    )  # fmt: skip
    made = json.loads(json.dumps(entry(node, OLD)))
    assert set(made) == {f.name for f in dataclasses.fields(Node)} | {"cik"}
    assert node_of(made) == (node, OLD)
    assert node_of(entry(node, None)) == (node, None)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"state": "asleep"}, "an unknown state or reason"),
        ({"attempts": "3"}, "'attempts' is not of its type"),
        ({"uncertain": 1}, "'uncertain' is not of its type"),
        ({"first_seen": True}, "'first_seen' is not of its type"),
        ({"sn": ""}, "'sn' is empty"),
        ({"cik": "not a cik"}, "holds something that is not a CIK"),
    ],
)
def test_an_entry_that_is_no_record_is_refused_by_name(
    clock: Clock, change: dict[str, Any], said: str
) -> None:
    made = entry(activated(clock), OLD) | change
    with pytest.raises(EntryError, match=said) as raised:
        node_of(made)
    assert "a" * 40 not in str(raised.value)


def test_an_entry_without_a_field_says_which() -> None:
    with pytest.raises(EntryError, match="lacks 'vendor'"):
        node_of({"sn": "SN1"})
    with pytest.raises(EntryError, match="is not a node record"):
        node_of(["SN1"])
