"""A bundle's entries imported into the running engine (:mod:`gatewayd.core.imports`), and
the entries themselves (:mod:`gatewayd.core.entries`): pure, with an injected clock."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from conftest import FakeClock as Clock

from gatewayd.core.actions import (
    Action,
    KeepRetired,
    Log,
    LookupCik,
    Publish,
    Result,
    SaveNode,
    StoreCik,
)
from gatewayd.core.engine import Engine
from gatewayd.core.entries import EntryError, entry, node_of, retired_of
from gatewayd.core.events import (
    ActivationAnswered,
    Announced,
    CikLookedUp,
    Drain,
    Imported,
    ReenableAnswered,
    Refused,
    RetiredKept,
    Rotate,
)
from gatewayd.core.imports import Answer, Decision
from gatewayd.core.model import Node, Reason, Settings, State
from gatewayd.core.retired import Retired
from gatewayd.core.secret import Secret

A = TypeVar("A")
SETTINGS = Settings(vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1"}), adopt=True)
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


def acts(actions: list[Action]) -> list[str]:
    """The kinds of the actions, the journal lines left out."""
    return [type(a).__name__ for a in actions if not isinstance(a, Log)]


def of(kind: type[A], actions: list[Action]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def imported(
    engine: Engine,
    node: Node,
    cik: Secret | None,
    stored: Secret | None = None,
    *,
    prefer_bundle: bool = False,
    retired_here: frozenset[Secret] = frozenset(),
    kept: str | None = None,
) -> list[Action]:
    """Hand the engine a bundle's entry as the executor would: the keystore read (``stored``,
    ``retired_here``), then the bundle's retired CIKs kept (``kept``: why not); what the
    last step comes to."""
    sn = node.sn
    asked = engine.handle(Imported(node, cik, prefer_bundle))
    held = engine.node(sn) or node
    assert asked == [LookupCik(sn, held.vendor, held.model, retired_ciks=True)]
    found = engine.handle(CikLookedUp(sn, stored, retired_ciks=retired_here))
    if not of(KeepRetired, found):
        return found
    (keep,) = of(KeepRetired, found)
    assert keep.replace is (stored is not None and cik is not None and stored != cik)
    return engine.handle(RetiredKept(sn, kept))


def result(actions: list[Action]) -> Result:
    (found,) = [a for a in actions if isinstance(a, Result)]
    return found


def test_a_node_unknown_here_is_taken_cik_first(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    node = activated(clock)
    actions = imported(engine, node, OLD)
    assert kinds(actions) == ["StoreCik", "SaveNode", "Log:imported", "Decision"]
    assert actions[0] == StoreCik("SN1", "acme", "thermo-v1", OLD)
    assert actions[1] == SaveNode(node)
    assert result(actions) == Decision(ok=True, message="SN1: imported", answer=Answer.IMPORTED)
    assert engine.node("SN1") == node
    assert engine.next_deadline() is None  # activated: no expiry warning is armed


def test_a_node_waiting_for_its_credentials_is_sent_them(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(404)))
    assert engine.node("SN1").state is State.REJECTED  # type: ignore[union-attr]
    actions = imported(engine, activated(clock), OLD)
    assert kinds(actions) == ["StoreCik", "SaveNode", "Log:imported", "Publish", "Decision"]
    (told,) = [a for a in actions if isinstance(a, Publish)]
    assert (told.answer.status, told.answer.cik) == ("activated", OLD)
    assert engine.node("SN1") == activated(clock)
    assert engine.counts()[State.REJECTED] == 0


def test_a_node_with_a_request_in_flight_is_not_imported(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    engine.handle(Announced("SN1"))
    before = engine.node("SN1")
    actions = imported(engine, activated(clock), OLD)
    assert actions == [
        Decision(
            ok=False,
            message="SN1: not imported: a request about it is under way; import it again later",
            answer=Answer.REFUSED,
        )
    ]
    assert engine.node("SN1") == before


def test_the_same_cik_stored_leaves_the_node_as_it_is(clock: Clock) -> None:
    here = dataclasses.replace(activated(clock), activated_at=clock.now)
    engine = Engine(SETTINGS, [here], clock, upper)
    actions = imported(engine, activated(clock), OLD, OLD)
    assert actions == [
        Decision(ok=True, message="SN1: already held, unchanged", answer=Answer.UNCHANGED)
    ]
    assert engine.node("SN1") == here


def test_a_differing_cik_is_kept_unless_the_bundle_is_preferred(clock: Clock) -> None:
    here = activated(clock)
    engine = Engine(SETTINGS, [here], clock, upper)
    kept = imported(engine, activated(clock), NEW, OLD)
    assert kept == [
        Decision(ok=False, message="SN1: kept as stored: its CIK differs from the bundle's "
                 "(--prefer-bundle takes the bundle's)", answer=Answer.KEPT)
    ]  # fmt: skip
    taken = imported(engine, activated(clock), NEW, OLD, prefer_bundle=True)  # OLD retired
    assert kinds(taken) == ["StoreCik", "SaveNode", "Log:imported", "Decision"]
    assert taken[0] == StoreCik("SN1", "acme", "thermo-v1", NEW)
    assert "the CIK stored before is retired" in of(Log, taken)[0].message
    assert not of(Publish, taken)  # it holds a CIK: asked, it is told


def test_a_node_with_a_check_or_a_reenable_under_way_is_not_imported(clock: Clock) -> None:
    """A new serial whose offered CIK is being checked has no record yet; a re-enable in
    flight is seen whether or not gatewayd re-enables by itself."""
    engine = Engine(SETTINGS, [], clock, upper)
    assert acts(engine.handle(Announced("SN1", cik=OLD))) == ["CheckCik"]
    assert engine.node("SN1") is None
    refused = imported(engine, activated(clock), NEW)
    assert [r.ok for r in of(Result, refused)] == [False]
    assert engine.node("SN1") is None
    here = activated(clock, "SN2")
    engine = Engine(SETTINGS, [here], clock, upper)
    assert "Reenable" in acts(engine.handle(Rotate("SN2")))
    engine.handle(ReenableAnswered("SN2", error="HTTP 503"))  # back to activated
    assert engine.node("SN2").state is State.ACTIVATED  # type: ignore[union-attr]
    assert imported(engine, here, OLD, OLD) == [
        Decision(ok=True, message="SN2: already held, unchanged", answer=Answer.UNCHANGED)
    ]
    engine.handle(Rotate("SN2"))
    assert [r.ok for r in of(Result, imported(engine, here, NEW))] == [False]


def test_a_record_left_activating_is_finished_as_at_start(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    node = Node("SN1", "acme", "thermo-v1", State.ACTIVATING, clock.now - 60, 1)
    actions = imported(engine, node, None)
    assert kinds(actions) == ["SaveNode", "Log:imported", "Decision", "LookupCik"]
    assert actions[-1] == LookupCik("SN1", "acme", "thermo-v1")
    assert engine.node("SN1").state is State.RECOVERING  # type: ignore[union-attr]


def test_a_rejected_record_is_held_from_its_own_rejection_time(clock: Clock) -> None:
    """rejected_retry_after (300 s) counts from the rejection the bundle records."""
    engine = Engine(SETTINGS, [], clock, upper)
    for sn, ago in (("SN1", 600.0), ("SN2", 60.0)):
        node = Node(
            sn, "acme", "thermo-v1", State.REJECTED, clock.now - ago,
            reason=Reason.UNKNOWN_SERIAL, http_status=404, rejected_at=clock.now - ago,
        )  # fmt: skip
        imported(engine, node, None)
    assert acts(engine.handle(Announced("SN1"))) == ["SaveNode", "Activate"]
    assert acts(engine.handle(Announced("SN2"))) == ["Publish"]  # told rejected again
    clock.advance(240)
    assert acts(engine.handle(Announced("SN2"))) == ["SaveNode", "Activate"]


# ------------------------------------------------------- one set of rules for both imports


def pending(clock: Clock) -> Node:
    return Node("SN1", "acme", "thermo-v1", State.PENDING, clock.now - 60, 1, clock.now + 30)


def rejected(clock: Clock) -> Node:
    ago = clock.now - 60
    return Node("SN1", "acme", "thermo-v1", State.REJECTED, ago, 1,
                reason=Reason.UNKNOWN_SERIAL, http_status=404, rejected_at=ago)  # fmt: skip


KEPT_ACTIVATED = "SN1: kept as stored: activated here, and the bundle's record of it is pending"
# the record here, the stored CIK, the retired CIKs; the entry's record and CIK; --prefer-bundle
# fmt: off
DECISIONS = {
    "unknown here": (None, None, (), activated, OLD, False, Answer.IMPORTED),
    "unknown here, a differing CIK stored": (None, NEW, (), activated, OLD, False, Answer.KEPT),
    "unknown here, preferred": (None, NEW, (), activated, OLD, True, Answer.IMPORTED),
    "activated vs rejected without a CIK":
        (activated, OLD, (), rejected, None, False, Answer.UNCHANGED),
    "activated vs rejected without a CIK, preferred":
        (activated, OLD, (), rejected, None, True, Answer.UNCHANGED),
    "activated vs pending with another CIK, preferred":
        (activated, OLD, (), pending, NEW, True, Answer.KEPT),
    "activated vs pending with its CIK": (activated, OLD, (), pending, OLD, True, Answer.UNCHANGED),
    "the same CIK": (activated, OLD, (), activated, OLD, False, Answer.UNCHANGED),
    "a differing CIK": (activated, OLD, (), activated, NEW, False, Answer.KEPT),
    "a differing CIK, preferred": (activated, OLD, (), activated, NEW, True, Answer.IMPORTED),
    "a CIK retired here": (activated, NEW, (OLD,), activated, OLD, True, Answer.REFUSED),
    "a CIK retired here, none stored": (None, None, (OLD,), activated, OLD, True, Answer.REFUSED),
    "pending vs activated": (pending, None, (), activated, OLD, False, Answer.IMPORTED),
    "pending vs rejected without a CIK":
        (pending, None, (), rejected, None, False, Answer.UNCHANGED),
}
# fmt: on


@pytest.mark.parametrize(
    ("here", "stored", "retired", "made", "cik", "prefer", "expected"),
    list(DECISIONS.values()),
    ids=list(DECISIONS),
)
def test_each_entry_is_decided_from_what_is_held_here(
    clock: Clock,
    here: Callable[[Clock], Node] | None,
    stored: Secret | None,
    retired: tuple[Secret, ...],
    made: Callable[[Clock], Node],
    cik: Secret | None,
    prefer: bool,
    expected: Answer,
) -> None:
    """The rules both imports follow, gatewayd running or stopped (gatewayctl runs the same
    engine, stopped)."""
    current = None if here is None else here(clock)
    for stopped in (False, True):
        engine = Engine(SETTINGS, [] if current is None else [current], clock, upper)
        if stopped:
            engine.handle(Drain())
        actions = imported(
            engine, made(clock), cik, stored, prefer_bundle=prefer, retired_here=frozenset(retired)
        )
        (decision,) = of(Decision, actions)
        assert decision.answer is expected
        assert decision.ok is (expected in {Answer.IMPORTED, Answer.UNCHANGED})


def test_a_node_activated_here_is_not_replaced_by_an_older_record_even_preferred(
    clock: Clock,
) -> None:
    engine = Engine(SETTINGS, [activated(clock)], clock, upper)
    actions = imported(engine, pending(clock), NEW, OLD, prefer_bundle=True)
    assert actions == [Decision(ok=False, message=KEPT_ACTIVATED, answer=Answer.KEPT)]
    assert engine.node("SN1") == activated(clock)


def test_a_cik_retired_here_is_refused_by_the_engine(clock: Clock) -> None:
    engine = Engine(SETTINGS, [], clock, upper)
    actions = imported(
        engine, activated(clock), OLD, prefer_bundle=True, retired_here=frozenset({OLD})
    )
    assert actions == [
        Decision(
            ok=False,
            message="SN1: not imported: its CIK in the bundle was retired here (refused, or "
            "rotated away)",
            answer=Answer.REFUSED,
        )
    ]
    assert engine.node("SN1") is None


def test_a_record_left_with_something_under_way_is_not_imported_offline(clock: Clock) -> None:
    """gatewayd stopped: what it finishes at its start (a request, a re-enable it started
    itself, a rotation) refuses the import as the running gatewayd refuses it meanwhile."""
    node = activated(clock)
    reenabling = dataclasses.replace(node, state=State.NEEDS_REENABLE, uncertain=True)
    auto, manual = (dataclasses.replace(SETTINGS, auto_reenable=on) for on in (True, False))
    cases = [
        (reenabling, auto, Answer.REFUSED),
        (reenabling, manual, Answer.UNCHANGED),
        (dataclasses.replace(node, state=State.ACTIVATING), manual, Answer.REFUSED),
        (dataclasses.replace(node, state=State.ROTATING), manual, Answer.REFUSED),
        (node, auto, Answer.UNCHANGED),
    ]
    for here, settings, expected in cases:
        engine = Engine(settings, [here], clock, upper)
        engine.handle(Drain())  # gatewayctl's engine: gatewayd stopped
        (decision,) = of(Decision, imported(engine, activated(clock), None, OLD))
        assert decision.answer is expected, (here.state, settings.auto_reenable)


# -------------------------------------------------------------------- entries


def test_an_entry_holds_every_field_and_comes_back_the_same(clock: Clock) -> None:
    node = Node(
        "SN1", "acme", "thermo-v1", State.REJECTED, clock.now, 3, clock.now + 5, "HTTP 404",
        Reason.UNKNOWN_SERIAL, 404, clock.now, None, expiry_warned=True,
        request_started=clock.now, request_form="onep", uncertain=True,
    )  # fmt: skip
    made = json.loads(json.dumps(entry(node, OLD)))
    assert set(made) == {f.name for f in dataclasses.fields(Node)} | {"cik", "retired"}
    assert node_of(made) == (node, OLD)
    assert node_of(entry(node, None)) == (node, None)


def test_an_entry_carries_its_retired_ciks_and_an_older_one_has_none(clock: Clock) -> None:
    retired = (
        Retired(Secret("c" * 40), None, "not recorded"),
        Retired(NEW, clock.now, "replaced by an import"),
    )
    made = json.loads(json.dumps(entry(activated(clock), OLD, retired)))
    assert retired_of(made) == retired
    assert node_of(made) == (activated(clock), OLD)
    older = entry(activated(clock), OLD)
    del older["retired"]  # a bundle of a gatewayctl that did not export them
    assert retired_of(older) == ()


RETIRED_NEW = {"cik": NEW.reveal(), "at": 1.0, "why": "rotated"}


@pytest.mark.parametrize(
    ("retired", "said"),
    [
        ("bbbb", "'retired' is not a list"),
        (["bbbb"], "a retired CIK is not an object"),
        ([RETIRED_NEW | {"cik": "b" * 39 + "<"}], "a retired CIK holds something that is not"),
        ([RETIRED_NEW | {"at": float("inf")}], "a retired CIK's time is not a time since"),
        ([RETIRED_NEW | {"at": True}], "a retired CIK's time is not a time since"),
        ([RETIRED_NEW | {"at": -1}], "a retired CIK's time is not a time since"),
        ([RETIRED_NEW | {"at": 1e300}], "a retired CIK's time is not a time since"),
        ([RETIRED_NEW | {"why": ""}], "a retired CIK's reason is not text of 1 to 200"),
        ([RETIRED_NEW | {"why": "x" * 201}], "a retired CIK's reason is not text of 1 to 200"),
        ([RETIRED_NEW | {"why": "a\x1b[2Jb"}], "a retired CIK's reason is not text of 1 to"),
        ([RETIRED_NEW | {"why": "\ud800"}], "a retired CIK's reason is not text of 1 to 200"),
        ([RETIRED_NEW, RETIRED_NEW | {"cik": OLD.reveal()}], "holds a CIK it also lists as"),
    ],
)
def test_an_entry_whose_retired_ciks_are_no_such_is_refused_by_name(
    clock: Clock, retired: object, said: str
) -> None:
    made = entry(activated(clock), OLD) | {"retired": retired}
    with pytest.raises(EntryError, match=re.escape(said)) as raised:
        retired_of(made)
    assert "the entry of 'SN1'" in str(raised.value)
    assert "a" * 39 not in str(raised.value)  # no CIK is ever quoted
    assert "b" * 39 not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"state": "asleep"}, "an unknown state or reason"),
        ({"attempts": "3"}, "'attempts' is not of its type"),
        ({"uncertain": 1}, "'uncertain' is not of its type"),
        ({"first_seen": True}, "'first_seen' is not of its type"),
        ({"sn": ""}, "'sn' is empty"),
        ({"cik": "a" * 39 + "<"}, "holds something that is not a CIK"),
        ({"attempts": 2**63}, "'attempts' is out of range"),
        ({"first_seen": float("nan")}, "'first_seen' is not a finite number"),
        ({"last_error": "\ud800"}, "'last_error' is not UTF-8 text"),
        ({"sn": "SN/1"}, "'sn' cannot be a serial number"),
        ({"sn": "SN+"}, "'sn' cannot be a serial number"),
    ],
)
def test_an_entry_that_is_no_record_is_refused_by_name(
    clock: Clock, change: dict[str, Any], said: str
) -> None:
    made = entry(activated(clock), OLD) | change
    with pytest.raises(EntryError, match=re.escape(said)) as raised:
        node_of(made)
    assert "a" * 39 not in str(raised.value)  # neither CIK is ever quoted


def test_an_entry_without_a_field_says_which() -> None:
    with pytest.raises(EntryError, match="lacks 'vendor'"):
        node_of({"sn": "SN1"})
    with pytest.raises(EntryError, match="is not a node record"):
        node_of(["SN1"])
