"""When the engine checks a CIK with Exosite, and when it does not: an offered CIK is adopted
only with a vendor token, each CIK is limited on its own, checks count against
``max_pending``, a serial Exosite just called unknown is not checked, and what
is remembered of checks is bounded. Pure: an injected clock, no I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from conftest import FakeClock as Clock

from gatewayd.core import book as books
from gatewayd.core.actions import Action, CheckCik, Log, Publish
from gatewayd.core.engine import Engine
from gatewayd.core.events import (
    ActivationAnswered,
    Announced,
    CikChecked,
    CikLookedUp,
    Issued,
    ReenableAnswered,
    Refused,
    Rotate,
    Verdict,
)
from gatewayd.core.model import Reason, Settings, State
from gatewayd.core.secret import Secret

SETTINGS = Settings(vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1"}), adopt=True)
REAL = Secret("1" * 40)
JUNK = Secret("0" * 40)
NEW = Secret("2" * 40)


def upper(_low: float, high: float) -> float:
    return high


def engine_with(clock: Clock, **changes: Any) -> Engine:
    return Engine(dataclasses.replace(SETTINGS, **changes), [], clock, upper)


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions if not isinstance(a, Log)]


def checked(actions: list[Action]) -> list[CheckCik]:
    return [a for a in actions if isinstance(a, CheckCik)]


def not_activatable(engine: Engine, sn: str) -> None:
    """``sn`` rejected with a 409: Exosite knows it, and gatewayd holds no CIK for it."""
    engine.handle(Announced(sn))
    engine.handle(ActivationAnswered(sn, Refused(409)))
    engine.handle(CikLookedUp(sn, None))
    node = engine.node(sn)
    assert node is not None
    assert (node.state, node.reason) == (State.REJECTED, Reason.NOT_ACTIVATABLE)


def test_without_a_vendor_token_an_offered_cik_is_never_checked_nor_adopted() -> None:
    engine = engine_with(Clock(), adopt=False)
    actions = engine.handle(Announced("SN1", cik=REAL))
    assert kinds(actions) == ["SaveNode", "Activate"]  # as an announce without "cik"
    assert checked(actions) == []


def test_without_a_vendor_token_an_activated_node_offering_another_cik_is_not_checked() -> None:
    engine = engine_with(Clock(), adopt=False)
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Issued(REAL)))
    assert kinds(engine.handle(Announced("SN1", cik=JUNK))) == ["LookupCik"]
    assert kinds(engine.handle(CikLookedUp("SN1", REAL))) == ["Publish"]  # from the keyring
    # saying its CIK is refused still has the stored one checked, as a CIK, not as an offer
    engine.handle(Announced("SN1", cik_rejected=True, cik=JUNK))
    (check,) = checked(engine.handle(CikLookedUp("SN1", REAL)))
    assert (check.cik, check.owner) == (REAL, False)
    actions = engine.handle(CikChecked("SN1", REAL, Verdict.REFUSED, "HTTP 401"))
    assert kinds(actions) == ["SaveNode", "RetireCik", "Activate"]  # the junk never checked


def test_an_offer_is_checked_as_the_serials_own() -> None:
    engine = engine_with(Clock())
    (check,) = checked(engine.handle(Announced("SN1", cik=REAL)))
    assert (check.sn, check.cik, check.owner) == ("SN1", REAL, True)


def test_a_junk_offer_does_not_hold_back_the_real_cik() -> None:
    clock = Clock()
    engine = engine_with(clock)
    not_activatable(engine, "B")
    assert len(checked(engine.handle(Announced("B", cik=JUNK)))) == 1
    actions = engine.handle(CikChecked("B", JUNK, Verdict.REFUSED, "HTTP 401"))
    assert checked(actions) == []
    clock.advance(1)
    # the same junk again within check_interval: not checked, answered from the record
    assert checked(engine.handle(Announced("B", cik=JUNK))) == []
    # the node's own CIK differs from the refused one: checked at once, and adopted
    (check,) = checked(engine.handle(Announced("B", cik=REAL)))
    assert check.cik == REAL
    actions = engine.handle(CikChecked("B", REAL, Verdict.ACCEPTED, "rid"))
    assert kinds(actions) == ["StoreCik", "SaveNode", "Publish"]
    node = engine.node("B")
    assert node is not None
    assert node.state is State.ACTIVATED


def test_each_cik_is_checked_at_most_once_per_check_interval() -> None:
    clock = Clock()
    engine = engine_with(clock, check_interval=300.0)
    not_activatable(engine, "B")
    engine.handle(Announced("B", cik=JUNK))
    engine.handle(CikChecked("B", JUNK, Verdict.UNKNOWN, "HTTP 503"))
    clock.advance(299)
    assert checked(engine.handle(Announced("B", cik=JUNK))) == []
    clock.advance(2)
    assert len(checked(engine.handle(Announced("B", cik=JUNK)))) == 1


def test_a_serial_exosite_called_unknown_is_not_checked_until_rejected_retry_after() -> None:
    clock = Clock()
    engine = engine_with(clock, rejected_retry_after=600.0)
    engine.handle(Announced("SN404"))
    engine.handle(ActivationAnswered("SN404", Refused(404)))
    actions = engine.handle(Announced("SN404", cik=REAL))
    assert checked(actions) == []
    assert kinds(actions) == ["Publish"]  # its rejection, from the record
    clock.advance(601)
    assert len(checked(engine.handle(Announced("SN404", cik=REAL)))) == 1


def test_checks_count_against_max_pending() -> None:
    clock = Clock()
    engine = engine_with(clock, max_pending=5)
    sent = []
    for i in range(300):
        sent += checked(engine.handle(Announced(f"MADE-UP-{i}", cik=Secret(f"{i:040x}"))))
    assert len(sent) == 5
    busy = engine.handle(Announced("MADE-UP-X", cik=JUNK))
    (answer,) = [a for a in busy if isinstance(a, Publish)]
    assert answer.answer.status == "pending"
    # one verdict frees a place: the next offer is checked
    engine.handle(CikChecked("MADE-UP-0", Secret(f"{0:040x}"), Verdict.REFUSED, "HTTP 401"))
    assert engine.node("MADE-UP-0") is not None  # its announce went on: now activating
    engine.handle(ActivationAnswered("MADE-UP-0", Refused(404)))
    assert len(checked(engine.handle(Announced("MADE-UP-Y", cik=JUNK)))) == 1


def test_a_second_announce_while_the_stored_cik_is_checked_sends_no_second_check() -> None:
    engine = engine_with(Clock())
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Issued(REAL)))
    engine.handle(Announced("SN1", cik_rejected=True))
    assert len(checked(engine.handle(CikLookedUp("SN1", REAL)))) == 1
    engine.handle(Announced("SN1", cik_rejected=True))
    assert checked(engine.handle(CikLookedUp("SN1", REAL))) == []


def test_what_is_remembered_of_checks_is_pruned_and_bounded() -> None:
    clock = Clock()
    engine = engine_with(clock)
    for i in range(books.MAX_REMEMBERED + 500):
        sn = f"SN{i}"
        assert len(checked(engine.handle(Announced(sn, cik=Secret(f"{i:040x}"))))) == 1
        engine.handle(CikChecked(sn, Secret(f"{i:040x}"), Verdict.ACCEPTED, "own"))
    assert engine.checks() == (0, books.MAX_REMEMBERED)
    clock.advance(301.0)  # all the others are older than check_interval
    assert len(checked(engine.handle(Announced("late", cik=JUNK)))) == 1
    assert engine.checks() == (1, 1)


def activated(engine: Engine, sn: str = "SN1") -> None:
    engine.handle(Announced(sn))
    engine.handle(ActivationAnswered(sn, Issued(REAL)))


def test_a_late_verdict_after_the_operator_stepped_in_decides_nothing() -> None:
    """A check of the stored CIK is under way when the operator rotates it: the verdict on
    the old CIK, coming once the new one is stored, neither retires the new one nor hands
    the old one out."""
    for verdict in (Verdict.REFUSED, Verdict.ACCEPTED):
        engine = engine_with(Clock())
        activated(engine)
        engine.handle(Announced("SN1", cik_rejected=True))
        assert len(checked(engine.handle(CikLookedUp("SN1", REAL)))) == 1
        engine.handle(Rotate("SN1"))
        engine.handle(ReenableAnswered("SN1"))
        engine.handle(ActivationAnswered("SN1", Issued(NEW)))  # the rotation is done
        late = engine.handle(CikChecked("SN1", REAL, verdict, "HTTP"))
        assert kinds(late) == [], verdict
        node = engine.node("SN1")
        assert node is not None
        assert node.state is State.ACTIVATED


def test_a_verdict_counts_only_for_the_cik_it_was_about() -> None:
    engine = engine_with(Clock())
    not_activatable(engine, "B")
    engine.handle(Announced("B", cik=JUNK))
    assert kinds(engine.handle(CikChecked("B", REAL, Verdict.ACCEPTED, "rid"))) == []
    node = engine.node("B")
    assert node is not None
    assert node.state is State.REJECTED  # REAL was never asked about: not adopted


def test_a_lookup_that_finds_nothing_does_not_forget_a_check_sent() -> None:
    """An offer is being checked; the operator's retry activates the node meanwhile, a 409
    and an empty keystore follow: the check stays under way, so a second offer waits for
    its verdict instead of sending a second check."""
    engine = engine_with(Clock())
    not_activatable(engine, "B")
    assert len(checked(engine.handle(Announced("B", cik=REAL)))) == 1
    engine.handle(ActivationAnswered("B", Refused(409)))  # a request of before, answered
    engine.handle(CikLookedUp("B", None))
    assert checked(engine.handle(Announced("B", cik=JUNK))) == []


def test_beyond_what_is_remembered_only_the_oldest_check_is_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node offering many CIKs fills what is remembered on its own: the check it has just
    made is not forgotten for it, only its oldest."""
    monkeypatch.setattr(books, "MAX_REMEMBERED", 3)
    clock = Clock()
    engine = engine_with(clock)
    not_activatable(engine, "SN1")  # Exosite knows it, gatewayd holds no CIK: offers are checked
    offers = [Secret(f"{i:040x}") for i in range(4)]
    for cik in offers:
        clock.advance(1.0)
        assert len(checked(engine.handle(Announced("SN1", cik=cik)))) == 1
        engine.handle(CikChecked("SN1", cik, Verdict.REFUSED, "HTTP 401"))
    assert engine.checks() == (0, 3)
    clock.advance(1.0)
    assert checked(engine.handle(Announced("SN1", cik=offers[3]))) == []
    assert len(checked(engine.handle(Announced("SN1", cik=offers[0])))) == 1  # the one forgotten
