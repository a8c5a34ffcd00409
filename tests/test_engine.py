"""The engine, with an injected clock: no sockets, no threads, no sleeps."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import FakeClock as Clock
from expected_transitions import EXPECTED

from gatewayd.core.actions import (
    Action,
    Activate,
    DeleteNode,
    Log,
    LookupCik,
    Publish,
    Reenable,
    Result,
    SaveNode,
    StoreCik,
)
from gatewayd.core.deadlines import EXPIRY_WINDOW
from gatewayd.core.engine import Engine
from gatewayd.core.events import (
    ActivationAnswered,
    Announced,
    BadAnnounce,
    CikChecked,
    CikLookedUp,
    Drain,
    Event,
    Failed,
    Forget,
    Imported,
    Issued,
    ReenableAnswered,
    Refused,
    Republish,
    RequestUnsent,
    RetiredKept,
    Retry,
    Rotate,
    Tick,
    Verdict,
)
from gatewayd.core.model import Node, Reason, ResponseTarget, Settings, State
from gatewayd.core.secret import Secret
from gatewayd.core.timers import backoff_ceiling
from gatewayd.core.transitions import ANY, TRANSITIONS, Effect, Special, Trigger, as_table, row_for

SETTINGS = Settings(
    vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1", "hygro"}), adopt=True
)
CIK = Secret("a" * 40)


A = TypeVar("A")


def upper(_low: float, high: float) -> float:
    """Jitter that always picks the top of the range, so delays are predictable."""
    return high


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


@pytest.fixture
def engine(clock: Clock) -> Engine:
    return Engine(SETTINGS, [], clock, upper)


def of(kind: type[A], actions: list[Action]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def answers(actions: list[Action]) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish)]


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions if not isinstance(a, Log)]


# ----------------------------------------------------------------- scenarios
# One per row of TRANSITIONS: bring a node to the row's state, fire its
# trigger, and return the actions. test_every_row_has_a_scenario keeps them
# in step with the table.


def _activating(engine: Engine) -> list[Action]:
    return engine.handle(Announced("SN1"))


def _pending(engine: Engine) -> list[Action]:
    _activating(engine)
    return engine.handle(ActivationAnswered("SN1", Failed("HTTP 503", 503)))


def _activated(engine: Engine) -> list[Action]:
    _activating(engine)
    return engine.handle(ActivationAnswered("SN1", Issued(CIK)))


def _rejected(engine: Engine) -> list[Action]:
    _activating(engine)
    return engine.handle(ActivationAnswered("SN1", Refused(404)))


def _recovering(clock: Clock) -> Engine:
    """An engine started on a record left 'activating' by the previous run."""
    node = Node("SN1", "acme", "thermo-v1", State.ACTIVATING, clock.now - 60)
    return Engine(SETTINGS, [node], clock, upper)


LOST = "cannot read the keyring: backend down"
AUTO = Settings(
    vendor="acme",
    model="thermo-v1",
    models=frozenset({"thermo-v1"}),
    auto_reenable=True,
    adopt=True,
)


def _lost(engine: Engine, clock: Clock) -> list[Action]:
    """A request times out after it may have reached Exosite; the retry gets 409."""
    _activating(engine)
    engine.handle(ActivationAnswered("SN1", Failed("timeout", maybe_delivered=True)))
    clock.advance(3600)
    engine.handle(Tick())
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    return engine.handle(CikLookedUp("SN1", None))


AUTO_ROWS = {
    Trigger.CIK_LOST_AUTO,
    Trigger.CIK_REVOKED_AUTO,
    Trigger.MALFORMED_AUTO,
    Trigger.UNSAVED,
    Trigger.ANNOUNCE_REENABLING,
    Trigger.REENABLED,
    Trigger.REENABLE_FAILED,
}


Scenario = Callable[[Engine, Clock], list[Action]]

SCENARIOS: dict[tuple[State | Special | None, Trigger], Scenario] = {
    (None, Trigger.ANNOUNCE): lambda e, c: e.handle(Announced("SN1")),
    (State.ACTIVATING, Trigger.ANNOUNCE): lambda e, c: (
        _activating(e),
        e.handle(Announced("SN1")),
    )[1],
    (State.PENDING, Trigger.ANNOUNCE): lambda e, c: (_pending(e), e.handle(Announced("SN1")))[1],
    (State.ACTIVATED, Trigger.ANNOUNCE): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1")),
    )[1],
    (State.REJECTED, Trigger.ANNOUNCE): lambda e, c: (
        _rejected(e),
        e.handle(Announced("SN1")),
    )[1],
    (State.REJECTED, Trigger.ANNOUNCE_LATE): lambda e, c: (
        _rejected(e),
        c.advance(300),
        e.handle(Announced("SN1")),
    )[2],
    (State.ACTIVATING, Trigger.ISSUED): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Issued(CIK))),
    )[1],
    (State.ACTIVATING, Trigger.REFUSED): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Refused(404))),
    )[1],
    (State.ACTIVATING, Trigger.CONFLICT): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Refused(409))),
    )[1],
    (State.ACTIVATING, Trigger.FAILED): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Failed("connection refused"))),
    )[1],
    (State.ACTIVATING, Trigger.CIK_FOUND): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Refused(409))),
        e.handle(CikLookedUp("SN1", CIK)),
    )[2],
    (State.ACTIVATING, Trigger.CIK_MISSING): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Refused(409))),
        e.handle(CikLookedUp("SN1", None)),
    )[2],
    (State.ACTIVATED, Trigger.CIK_FOUND): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1")),
        e.handle(CikLookedUp("SN1", CIK)),
    )[2],
    (State.ACTIVATED, Trigger.CIK_MISSING): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1")),
        e.handle(CikLookedUp("SN1", None)),
    )[2],
    (State.RECOVERING, Trigger.ANNOUNCE): lambda e, c: e.handle(Announced("SN1")),
    (State.RECOVERING, Trigger.CIK_FOUND): lambda e, c: e.handle(CikLookedUp("SN1", CIK)),
    (State.RECOVERING, Trigger.CIK_MISSING): lambda e, c: e.handle(CikLookedUp("SN1", None)),
    (State.RECOVERING, Trigger.LOOKUP_FAILED): lambda e, c: e.handle(
        CikLookedUp("SN1", None, LOST)
    ),
    (State.ACTIVATING, Trigger.LOOKUP_FAILED): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Refused(409))),
        e.handle(CikLookedUp("SN1", None, LOST)),
    )[2],
    (State.ACTIVATED, Trigger.LOOKUP_FAILED): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1")),
        e.handle(CikLookedUp("SN1", None, LOST)),
    )[2],
    (State.ACTIVATING, Trigger.CIK_LOST): _lost,
    (State.ACTIVATING, Trigger.CIK_LOST_AUTO): _lost,
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE): lambda e, c: (
        _lost(e, c),
        e.handle(Announced("SN1")),
    )[1],
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE_LATE): lambda e, c: (
        _lost(e, c),
        c.advance(300),
        e.handle(Announced("SN1")),
    )[2],
    (State.NEEDS_REENABLE, Trigger.ANNOUNCE_REENABLING): lambda e, c: (
        _lost(e, c),
        e.handle(Announced("SN1")),
    )[1],
    (State.NEEDS_REENABLE, Trigger.REENABLED): lambda e, c: (
        _lost(e, c),
        e.handle(ReenableAnswered("SN1")),
    )[1],
    (State.NEEDS_REENABLE, Trigger.REENABLE_FAILED): lambda e, c: (
        _lost(e, c),
        e.handle(ReenableAnswered("SN1", "HTTP 401")),
    )[1],
    (State.ACTIVATING, Trigger.MALFORMED): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Issued(Secret("<html>proxy</html>"), "markup"))),
    )[1],
    (State.ACTIVATING, Trigger.MALFORMED_AUTO): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Issued(Secret(""), "empty"))),
    )[1],
    (State.ACTIVATING, Trigger.UNSAVED): lambda e, c: (
        _activating(e),
        e.handle(RequestUnsent("SN1", "cannot save node 'SN1': database or disk is full")),
    )[1],
    (State.NEEDS_REENABLE, Trigger.UNSAVED): lambda e, c: (
        _lost(e, c),
        e.handle(RequestUnsent("SN1", "cannot save node 'SN1': disk I/O error")),
    )[1],
    (State.PENDING, Trigger.RETRY_DUE): lambda e, c: (_pending(e), c.advance(5), e.handle(Tick()))[
        2
    ],
    (State.ACTIVATED, Trigger.REPUBLISH): lambda e, c: (_activated(e), e.handle(Republish("SN1")))[
        1
    ],
    (State.PENDING, Trigger.RETRY): lambda e, c: (_pending(e), e.handle(Retry("SN1")))[1],
    (State.REJECTED, Trigger.RETRY): lambda e, c: (_rejected(e), e.handle(Retry("SN1")))[1],
    (State.NEEDS_REENABLE, Trigger.RETRY): lambda e, c: (_lost(e, c), e.handle(Retry("SN1")))[1],
}


def _stored(state: State, settings: Settings = SETTINGS, **fields: object) -> Scenario:
    """A scenario on an engine started on a record of ``state`` first seen a day ago (its
    expiry due), given to it through ``ENGINES``."""

    def scenario(e: Engine, c: Clock) -> list[Action]:
        return [*e.start(), *e.handle(Tick())]

    def make(c: Clock) -> Engine:
        node = Node("SN1", "acme", "thermo-v1", state, c.now - EXPIRY_WINDOW, **fields)  # type: ignore[arg-type]
        return Engine(settings, [node], c, upper)

    ENGINES[(state, Trigger.EXPIRY_DUE)] = make
    return scenario


def _stopping(before: Callable[[Engine, Clock], object], then: Scenario) -> Scenario:
    return lambda e, c: (before(e, c), e.handle(Drain()), then(e, c))[2]


ENGINES: dict[tuple[State | Special | None, Trigger], Callable[[Clock], Engine]] = {
    (State.ROTATING, Trigger.RESTARTED_ROTATING): lambda c: Engine(
        SETTINGS,
        [Node("SN1", "acme", "thermo-v1", State.ROTATING, c.now - 60, reason=Reason.ROTATION)],
        c,
        upper,
    ),
    (None, Trigger.ANNOUNCE_BUSY): lambda c: Engine(
        dataclasses.replace(SETTINGS, max_pending=1), [], c, upper
    ),
    (State.ACTIVATING, Trigger.RESTARTED): lambda c: Engine(
        SETTINGS, [Node("SN1", "acme", "thermo-v1", State.ACTIVATING, c.now - 60)], c, upper
    ),
    (State.NEEDS_REENABLE, Trigger.RESTARTED_REENABLING): lambda c: Engine(
        AUTO,
        [Node("SN1", "acme", "thermo-v1", State.NEEDS_REENABLE, c.now - 60, uncertain=True)],
        c,
        upper,
    ),
}
"""Rows whose scenario needs an engine other than a fresh one (see test_row)."""

BRING: dict[State | None, Callable[[Engine, Clock], object]] = {
    None: lambda e, c: None,
    State.ACTIVATING: lambda e, c: _activating(e),
    State.RECOVERING: lambda e, c: None,
    State.PENDING: lambda e, c: _pending(e),
    State.ACTIVATED: lambda e, c: _activated(e),
    State.REJECTED: lambda e, c: _rejected(e),
    State.NEEDS_REENABLE: _lost,
    State.ROTATING: lambda e, c: (_activated(e), e.handle(Rotate("SN1"))),
}
"""How a scenario brings SN1 to each state (RECOVERING: test_row's engine has it so)."""


def _then(state: State | None, event: Event) -> Scenario:
    """Bring SN1 to ``state``, then hand the engine ``event``."""

    def scenario(e: Engine, c: Clock) -> list[Action]:
        BRING[state](e, c)
        return e.handle(event)

    return scenario


MORE_SCENARIOS: dict[tuple[State | Special | None, Trigger], Scenario] = {
    (None, Trigger.ANNOUNCE_BUSY): lambda e, c: (
        e.handle(Announced("SN0")),
        e.handle(Announced("SN1")),
    )[1],
    (State.ACTIVATING, Trigger.FAILED_MAYBE): lambda e, c: (
        _activating(e),
        e.handle(ActivationAnswered("SN1", Failed("timeout", maybe_delivered=True))),
    )[1],
    (State.ACTIVATING, Trigger.RESTARTED): lambda e, c: e.start(),
    (State.NEEDS_REENABLE, Trigger.RESTARTED_REENABLING): lambda e, c: e.start(),
    (None, Trigger.STOPPING): _stopping(BRING[None], lambda e, c: e.handle(Announced("SN1"))),
    (State.RECOVERING, Trigger.STOPPING): _stopping(
        BRING[State.RECOVERING], lambda e, c: e.handle(CikLookedUp("SN1", None))
    ),
    (State.PENDING, Trigger.STOPPING): _stopping(
        BRING[State.PENDING], lambda e, c: (c.advance(3600), e.handle(Tick()))[1]
    ),
    (State.REJECTED, Trigger.STOPPING): _stopping(
        BRING[State.REJECTED], lambda e, c: (c.advance(300), e.handle(Announced("SN1")))[1]
    ),
    (State.NEEDS_REENABLE, Trigger.STOPPING): _stopping(
        BRING[State.NEEDS_REENABLE], lambda e, c: e.handle(Retry("SN1"))
    ),
    (State.NEEDS_REENABLE, Trigger.REENABLED_STOPPING): _stopping(
        BRING[State.NEEDS_REENABLE], lambda e, c: e.handle(ReenableAnswered("SN1"))
    ),
    (State.ACTIVATING, Trigger.EXPIRY_DUE): _stored(State.ACTIVATING),
    (State.RECOVERING, Trigger.EXPIRY_DUE): _stored(State.ACTIVATING),
    (State.PENDING, Trigger.EXPIRY_DUE): _stored(State.PENDING, next_attempt=None),
    (State.REJECTED, Trigger.EXPIRY_DUE): _stored(
        State.REJECTED, reason=Reason.UNKNOWN_SERIAL, rejected_at=1.0
    ),
    (State.NEEDS_REENABLE, Trigger.EXPIRY_DUE): _stored(
        State.NEEDS_REENABLE, reason=Reason.NOT_ACTIVATABLE, rejected_at=1.0
    ),
    **{(state, Trigger.ANNOUNCE_MODEL): _then(state, Announced("SN1", "other")) for state in BRING},
    **{
        (state, Trigger.ISSUED_UNASKED): _then(state, ActivationAnswered("SN1", Issued(CIK)))
        for state in BRING
        if state is not State.ACTIVATING
    },
    **{
        (state, Trigger.FORGET): _then(state, Forget("SN1"))
        for state in (State.PENDING, State.ACTIVATED, State.REJECTED, State.NEEDS_REENABLE)
    },
}
SCENARIOS |= MORE_SCENARIOS


NO_CIK = (None, State.REJECTED, State.NEEDS_REENABLE)
OFFER = Announced("SN1", cik=CIK)


def _not_activatable(engine: Engine) -> list[Action]:
    """SN1 rejected with a 409: a device Exosite knows, activated by someone else."""
    _activating(engine)
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    return engine.handle(CikLookedUp("SN1", None))


def _offered(state: State | None, event: Event) -> Scenario:
    """Bring SN1 to ``state`` (rejected: with a 409, Exosite knows the serial), then hand
    the engine ``event``."""
    if state is State.REJECTED:
        return lambda e, c: (_not_activatable(e), e.handle(event))[1]
    return _then(state, event)


def _adopted(state: State | None) -> Scenario:
    """SN1 in ``state`` offers its CIK; Exosite accepts it."""

    def scenario(e: Engine, c: Clock) -> list[Action]:
        _offered(state, OFFER)(e, c)
        return e.handle(CikChecked("SN1", CIK, Verdict.ACCEPTED, "HTTP 200"))

    return scenario


OTHER = Secret("b" * 40)


def _replacing(e: Engine, c: Clock) -> tuple[list[Action], list[Action]]:
    """SN1 activated offers another CIK than the stored one, which Exosite refuses."""
    _activated(e)
    e.handle(Announced("SN1", cik=OTHER))
    e.handle(CikLookedUp("SN1", CIK))
    return [], e.handle(CikChecked("SN1", CIK, Verdict.REFUSED, "HTTP 401"))


def _again(state: State | None) -> Scenario:
    """SN1 in ``state`` offers its CIK, and announces again before the verdict."""

    def scenario(e: Engine, c: Clock) -> list[Action]:
        _offered(state, OFFER)(e, c)
        return e.handle(Announced("SN1"))

    return scenario


def _checking(e: Engine, c: Clock) -> list[Action]:
    """SN1 activated, says Exosite refuses its CIK; the keyring's answer comes."""
    _activated(e)
    e.handle(Announced("SN1", cik_rejected=True))
    return e.handle(CikLookedUp("SN1", CIK))


def _verdict(verdict: Verdict) -> Scenario:
    return lambda e, c: (_checking(e, c), e.handle(CikChecked("SN1", CIK, verdict, "HTTP")))[1]


def _revoked(e: Engine, c: Clock) -> list[Action]:
    """SN1's CIK refused, and the activation that follows answered 409, nothing stored."""
    _verdict(Verdict.REFUSED)(e, c)
    e.handle(ActivationAnswered("SN1", Refused(409)))
    return e.handle(CikLookedUp("SN1", None))


SCENARIOS |= {
    (State.ACTIVATED, Trigger.ANNOUNCE_CHECK): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1", cik_rejected=True)),
    )[1],
    (State.ACTIVATED, Trigger.CHECK_FOUND): _checking,
    (State.ACTIVATED, Trigger.OFFERED_STORED): lambda e, c: (
        _activated(e),
        e.handle(Announced("SN1", cik=CIK)),
        e.handle(CikLookedUp("SN1", CIK)),
    )[2],
    (State.ACTIVATED, Trigger.CIK_ACCEPTED): _verdict(Verdict.ACCEPTED),
    (State.ACTIVATED, Trigger.CHECK_UNKNOWN): _verdict(Verdict.UNKNOWN),
    (State.ACTIVATED, Trigger.CIK_REFUSED): _verdict(Verdict.REFUSED),
    (State.ACTIVATED, Trigger.STOPPING): lambda e, c: (
        _checking(e, c),
        e.handle(Drain()),
        e.handle(CikChecked("SN1", CIK, Verdict.REFUSED, "HTTP 401")),
    )[2],
    (State.ACTIVATING, Trigger.CIK_REVOKED): _revoked,
    (State.ACTIVATING, Trigger.CIK_REVOKED_AUTO): _revoked,
    **{(state, Trigger.ANNOUNCE_ADOPT): _offered(state, OFFER) for state in NO_CIK},
    **{(state, Trigger.ANNOUNCE_CHECKING): _again(state) for state in NO_CIK},
    (State.ACTIVATED, Trigger.ROTATE): _then(State.ACTIVATED, Rotate("SN1")),
    (State.ACTIVATED, Trigger.CHECK_OFFERED): lambda e, c: _replacing(e, c)[1],
    (State.ACTIVATED, Trigger.ADOPTED): lambda e, c: (
        _replacing(e, c),
        e.handle(CikChecked("SN1", OTHER, Verdict.ACCEPTED, "HTTP 200")),
    )[1],
    (State.ROTATING, Trigger.RESTARTED_ROTATING): lambda e, c: e.start(),
    (State.ROTATING, Trigger.ANNOUNCE): _then(State.ROTATING, Announced("SN1")),
    (State.ROTATING, Trigger.REENABLED): _then(State.ROTATING, ReenableAnswered("SN1")),
    (State.ROTATING, Trigger.REENABLED_STOPPING): _stopping(
        BRING[State.ROTATING], lambda e, c: e.handle(ReenableAnswered("SN1"))
    ),
    (State.ROTATING, Trigger.REENABLE_FAILED): _then(
        State.ROTATING, ReenableAnswered("SN1", "HTTP 500")
    ),
    (State.ACTIVATING, Trigger.ISSUED_ROTATED): lambda e, c: (
        _then(State.ROTATING, ReenableAnswered("SN1"))(e, c),
        e.handle(ActivationAnswered("SN1", Issued(CIK))),
    )[1],
    **{(state, Trigger.ADOPTED): _adopted(state) for state in NO_CIK},
}
NEW_CIK = Secret("c" * 40)


def _revoking_engine(clock: Clock) -> Engine:
    """An engine started on a record saying SN1's CIK was refused and a request is due:
    it reads the keystore first."""
    node = Node(
        "SN1", "acme", "thermo-v1", State.ACTIVATING, clock.now - 60, reason=Reason.CIK_REVOKED
    )
    engine = Engine(SETTINGS, [node], clock, upper)
    engine.start()
    return engine


def _revoked_409(e: Engine, c: Clock) -> list[Action]:
    """SN1's CIK refused; the activation that follows is answered 409, and a CIK is found."""
    _verdict(Verdict.REFUSED)(e, c)
    e.handle(ActivationAnswered("SN1", Refused(409)))
    return e.handle(CikLookedUp("SN1", NEW_CIK))


def _found_then(verdict: Verdict | None, state: State) -> Scenario:
    """A CIK found for SN1 in ``state`` after its CIK was refused; Exosite's ``verdict`` on
    it (None: none yet)."""

    def scenario(e: Engine, c: Clock) -> list[Action]:
        recovering = state is State.RECOVERING
        actions = e.handle(CikLookedUp("SN1", CIK)) if recovering else _revoked_409(e, c)
        if verdict is None:
            return actions
        return e.handle(CikChecked("SN1", CIK if recovering else NEW_CIK, verdict, "HTTP"))

    return scenario


REVOKING = (State.ACTIVATING, State.RECOVERING)
for _state in REVOKING:
    if _state is State.RECOVERING:
        for _trigger in (
            Trigger.REVOKED_FOUND,
            Trigger.CIK_ACCEPTED,
            Trigger.CIK_REFUSED,
            Trigger.CHECK_UNKNOWN,
        ):
            ENGINES[(_state, _trigger)] = _revoking_engine
    SCENARIOS[(_state, Trigger.REVOKED_FOUND)] = _found_then(None, _state)
    SCENARIOS[(_state, Trigger.CIK_ACCEPTED)] = _found_then(Verdict.ACCEPTED, _state)
    SCENARIOS[(_state, Trigger.CIK_REFUSED)] = _found_then(Verdict.REFUSED, _state)
    SCENARIOS[(_state, Trigger.CHECK_UNKNOWN)] = _found_then(Verdict.UNKNOWN, _state)
SCENARIOS[(State.ACTIVATING, Trigger.STOPPING)] = lambda e, c: (
    _revoked_409(e, c),
    e.handle(Drain()),
    e.handle(CikChecked("SN1", NEW_CIK, Verdict.REFUSED, "HTTP 401")),
)[2]
SCENARIOS[(State.ACTIVATED, Trigger.RETIRED_ONLY)] = lambda e, c: (
    _activated(e),
    e.handle(CikLookedUp("SN1", None, retired=True)),
)[1]
SCENARIOS[(State.ACTIVATED, Trigger.RETIRED_ONLY_AUTO)] = SCENARIOS[
    (State.ACTIVATED, Trigger.RETIRED_ONLY)
]
AUTO_ROWS.add(Trigger.RETIRED_ONLY_AUTO)


def _rotation_unsure(e: Engine, c: Clock) -> list[Action]:
    """SN1 rotating; the re-enable timed out after it was sent."""
    BRING[State.ROTATING](e, c)
    return e.handle(ReenableAnswered("SN1", "timed out", maybe_done=True))


SCENARIOS[(State.ROTATING, Trigger.REENABLE_MAYBE)] = _rotation_unsure
SCENARIOS[(State.ROTATING, Trigger.RETRY_DUE)] = lambda e, c: (
    _rotation_unsure(e, c),
    c.advance(3600),
    e.handle(Tick()),
)[2]
SCENARIOS[(State.ROTATING, Trigger.STOPPING)] = lambda e, c: (
    _rotation_unsure(e, c),
    e.handle(Drain()),
    c.advance(3600),
    e.handle(Tick()),
)[3]

# the recovering record of the expiry row: started, its expiry then due
ENGINES[(State.RECOVERING, Trigger.EXPIRY_DUE)] = ENGINES.pop(
    (State.ACTIVATING, Trigger.EXPIRY_DUE)
)
OTHER = Secret("b" * 40)


def _entry(e: Engine, cik: Secret | None = CIK) -> list[Action]:
    """A bundle's entry for SN1, activated elsewhere with ``cik``."""
    bundle = Node("SN1", "acme", "thermo-v1", State.ACTIVATED, 0.0, activated_at=0.0)
    return e.handle(Imported(bundle, cik))


def _looked_up(e: Engine, stored: Secret | None, *retired: Secret) -> list[Action]:
    return e.handle(CikLookedUp("SN1", stored, retired_ciks=frozenset(retired)))


SCENARIOS |= {
    (ANY, Trigger.IMPORT): lambda e, c: _entry(e),
    (ANY, Trigger.IMPORT_REFUSED): lambda e, c: (_entry(e), _looked_up(e, None, CIK))[1],
    (ANY, Trigger.IMPORT_KEPT): lambda e, c: (_activated(e), _entry(e, OTHER), _looked_up(e, CIK))[
        2
    ],
    (ANY, Trigger.IMPORT_UNCHANGED): lambda e, c: (_activated(e), _entry(e), _looked_up(e, CIK))[2],
    (ANY, Trigger.IMPORT_TAKE): lambda e, c: (_entry(e), _looked_up(e, None))[1],
    (ANY, Trigger.IMPORT_LEFT): lambda e, c: (
        _activated(e),
        _entry(e),
        _looked_up(e, CIK),
        e.handle(RetiredKept("SN1")),
    )[3],
    (ANY, Trigger.IMPORT_UNKEPT): lambda e, c: (
        _entry(e),
        _looked_up(e, None),
        e.handle(RetiredKept("SN1", "disk full")),
    )[2],
    (ANY, Trigger.IMPORT_TAKEN): lambda e, c: (
        _entry(e),
        _looked_up(e, None),
        e.handle(RetiredKept("SN1")),
    )[2],
}
REACHED: dict[tuple[State | Special | None, Trigger], State | None] = {
    (ANY, Trigger.IMPORT): None,
    (ANY, Trigger.IMPORT_REFUSED): None,
    (ANY, Trigger.IMPORT_KEPT): State.ACTIVATED,
    (ANY, Trigger.IMPORT_UNCHANGED): State.ACTIVATED,
    (ANY, Trigger.IMPORT_TAKE): None,
    (ANY, Trigger.IMPORT_LEFT): State.ACTIVATED,
    (ANY, Trigger.IMPORT_UNKEPT): None,
    (ANY, Trigger.IMPORT_TAKEN): State.ACTIVATED,
}
"""The state each scenario of a row for any state (or to the bundle's) leaves SN1 in."""

ENGINES[(State.ACTIVATING, Trigger.EXPIRY_DUE)] = lambda c: Engine(
    SETTINGS, [Node("SN1", "acme", "thermo-v1", State.ACTIVATING, c.now - EXPIRY_WINDOW)], c, upper
)
SCENARIOS[(State.ACTIVATING, Trigger.EXPIRY_DUE)] = lambda e, c: e.handle(Tick())


def test_every_row_that_sends_a_request_or_retries_has_one_for_a_stop() -> None:
    """While gatewayd stops, no request leaves and no retry fires: each such row has a row
    for its state and the trigger :func:`row_for` makes of it."""
    sending = [
        (state, trigger)
        for (state, trigger), row in TRANSITIONS.items()
        if Effect.REQUEST in row.effects or trigger is Trigger.RETRY_DUE
    ]
    assert (None, Trigger.ANNOUNCE) in sending
    assert (State.ROTATING, Trigger.RETRY_DUE) in sending
    for state, trigger in sending:
        assert not isinstance(state, Special)  # no row for every state sends a request
        instead, stop = row_for(state, trigger, stopping=True)
        assert instead in {Trigger.STOPPING, Trigger.REENABLED_STOPPING}, (state, trigger)
        assert stop is not None, (state, trigger)
        assert Effect.REQUEST not in stop.effects, (state, trigger)


def test_every_row_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(TRANSITIONS)


def test_the_table_has_the_specified_rows_and_states_after() -> None:
    """The table against the rows written out in expected_transitions: a row added,
    dropped or sent to another state on either side fails."""
    table = {row: transition.target for row, transition in TRANSITIONS.items()}
    specified = {row: target for row, (target, _kinds) in EXPECTED.items()}
    assert table.keys() - specified.keys() == set(), "rows of the table not specified"
    assert specified.keys() - table.keys() == set(), "rows specified not in the table"
    differ = {row: (table[row], specified[row]) for row in table if table[row] != specified[row]}
    assert differ == {}, "rows whose state after differs: (the table's, the specified)"


@pytest.mark.parametrize("row", list(TRANSITIONS), ids=lambda r: f"{r[0]}-{r[1].name}")
def test_row(row: tuple[State | Special | None, Trigger], clock: Clock) -> None:
    if row in ENGINES:
        engine = ENGINES[row](clock)
    elif row[0] is State.RECOVERING:
        engine = _recovering(clock)
        engine.start()
    else:
        auto = row[1] in AUTO_ROWS or row[1] is Trigger.REENABLED_STOPPING
        engine = Engine(AUTO if auto else SETTINGS, [], clock, upper)
    target, expected = EXPECTED[row]
    actions = SCENARIOS[row](engine, clock)
    assert kinds(actions) == expected
    node = engine.node("SN1")
    if isinstance(target, Special):
        target = REACHED[row]
    if target is None:
        assert node is None
    else:
        assert node is not None
        assert node.state is target
    for save in of(SaveNode, actions):
        assert save.node == node


# ------------------------------------------------------------------- rules


def test_first_announce_saves_before_the_request(engine: Engine, clock: Clock) -> None:
    actions = engine.handle(Announced("SN1"))
    (save,) = of(SaveNode, actions)
    (activate,) = of(Activate, actions)
    assert save.node.state is State.ACTIVATING
    assert save.node.first_seen == clock.now
    assert activate == Activate("SN1", "acme", "thermo-v1")


def test_reannounce_in_flight_sends_no_second_request(engine: Engine) -> None:
    engine.handle(Announced("SN1"))
    for _ in range(5):
        assert of(Activate, engine.handle(Announced("SN1"))) == []


def test_200_stores_then_saves_then_publishes(engine: Engine) -> None:
    engine.handle(Announced("SN1", model="hygro"))
    actions = engine.handle(ActivationAnswered("SN1", Issued(CIK)))
    assert kinds(actions) == ["StoreCik", "SaveNode", "Publish"]
    store, save, publish = (a for a in actions if not isinstance(a, Log))
    assert store == StoreCik("SN1", "acme", "hygro", CIK)
    assert isinstance(save, SaveNode)
    assert save.node.state is State.ACTIVATED
    assert isinstance(publish, Publish)
    assert publish.answer.cik == CIK
    assert (publish.answer.vendor, publish.answer.model) == ("acme", "hygro")


@pytest.mark.parametrize(
    "body", ["", "0123456789", "<html><body>502 Bad Gateway</body></html>", "a" * 41]
)
def test_a_body_that_is_no_cik_is_kept_apart_and_never_handed_out(
    engine: Engine, clock: Clock, body: str
) -> None:
    engine.handle(Announced("SN1"))
    actions = engine.handle(ActivationAnswered("SN1", Issued(Secret(body), "not a CIK")))
    stored = StoreCik("SN1", "acme", "thermo-v1", Secret(body), unverified=True)
    assert of(StoreCik, actions) == [stored]
    (log,) = (a for a in actions if isinstance(a, Log) and a.kind == "cik_malformed")
    assert log.level == logging.ERROR
    (publish,) = answers(actions)
    assert (publish.answer.status, publish.answer.cik) == ("rejected", None)
    assert publish.answer.reason is Reason.NOT_ACTIVATABLE
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.NEEDS_REENABLE
    # the operator's retry: Exosite says 409 and nothing is stored, so it is lost, not rejected
    engine.handle(Retry("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    actions = engine.handle(CikLookedUp("SN1", None))
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.NEEDS_REENABLE
    (publish,) = answers(actions)
    assert (publish.answer.status, publish.answer.cik) == ("rejected", None)
    assert publish.answer.reason is Reason.NOT_ACTIVATABLE


def test_an_unreadable_cik_is_answered_pending_and_logged_once_a_minute(
    engine: Engine, clock: Clock
) -> None:
    _activated(engine)
    said = []
    for _ in range(3):
        engine.handle(Announced("SN1"))
        actions = engine.handle(CikLookedUp("SN1", None, LOST))
        (publish,) = answers(actions)
        assert (publish.answer.status, publish.answer.retry_in) == ("pending", 30)
        said += [a for a in actions if isinstance(a, Log) and a.kind == "cik_unreadable"]
        clock.advance(20)
    assert [log.level for log in said] == [logging.ERROR]
    assert engine.unreadable() == ["SN1"]
    engine.handle(Announced("SN1"))
    actions = engine.handle(CikLookedUp("SN1", None, LOST))
    assert [a.kind for a in actions if isinstance(a, Log)] == ["cik_unreadable"]
    engine.handle(CikLookedUp("SN1", CIK))
    assert engine.unreadable() == []


def test_a_request_whose_record_cannot_be_saved_waits_as_pending(
    engine: Engine, clock: Clock
) -> None:
    engine.handle(Announced("SN1"))
    actions = engine.handle(RequestUnsent("SN1", "cannot save node 'SN1': disk full"))
    assert of(Activate, actions) == []
    node = engine.node("SN1")
    assert node is not None
    assert (node.state, node.uncertain) == (State.PENDING, False)
    assert node.next_attempt == clock.now + 5
    (publish,) = answers(actions)
    assert publish.answer.status == "pending"
    # a re-announce is answered at once, and the retry tries to save (and send) again
    assert answers(engine.handle(Announced("SN1")))[0].answer.status == "pending"
    clock.advance(5)
    assert kinds(engine.handle(Tick())) == ["SaveNode", "Activate"]


def test_reannounce_of_activated_node_reads_the_keyring_only(engine: Engine) -> None:
    _activated(engine)
    actions = engine.handle(Announced("SN1"))
    assert of(LookupCik, actions) == [LookupCik("SN1", "acme", "thermo-v1")]
    actions = engine.handle(CikLookedUp("SN1", CIK))
    assert of(Activate, actions) == []
    (publish,) = answers(actions)
    assert publish.answer.status == "activated"
    assert publish.answer.cik == CIK


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (404, Reason.UNKNOWN_SERIAL),
        (403, Reason.INVALID_VENDOR_MODEL),
        (400, Reason.API_ERROR),
        (410, Reason.API_ERROR),
    ],
)
def test_refusals_give_their_reason(engine: Engine, status: int, reason: Reason) -> None:
    engine.handle(Announced("SN1"))
    (publish,) = answers(engine.handle(ActivationAnswered("SN1", Refused(status))))
    assert publish.answer.status == "rejected"
    assert publish.answer.reason is reason
    assert publish.answer.http_status == status
    assert publish.answer.message


def test_409_without_a_stored_cik_is_not_activatable(engine: Engine) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    (publish,) = answers(engine.handle(CikLookedUp("SN1", None)))
    assert publish.answer.reason is Reason.NOT_ACTIVATABLE
    assert publish.answer.http_status == 409
    assert "Portals" in (publish.answer.message or "")


def test_409_with_a_stored_cik_republishes_it(engine: Engine) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    actions = engine.handle(CikLookedUp("SN1", CIK))
    (publish,) = answers(actions)
    assert publish.answer.cik == CIK
    assert any(isinstance(a, Log) and a.kind == "republished" for a in actions)
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.ACTIVATED


def test_rejection_is_held_then_the_api_is_asked_again(engine: Engine, clock: Clock) -> None:
    _rejected(engine)
    clock.advance(299)
    actions = engine.handle(Announced("SN1"))
    assert of(Activate, actions) == []
    assert answers(actions)[0].answer.reason is Reason.UNKNOWN_SERIAL
    clock.advance(1)
    assert of(Activate, engine.handle(Announced("SN1"))) == [Activate("SN1", "acme", "thermo-v1")]


def test_transient_failures_back_off_exponentially_to_the_cap(engine: Engine, clock: Clock) -> None:
    engine.handle(Announced("SN1"))
    delays = []
    for _ in range(12):
        actions = engine.handle(ActivationAnswered("SN1", Failed("HTTP 503", 503)))
        node = engine.node("SN1")
        assert node is not None
        assert node.state is State.PENDING
        assert node.next_attempt is not None
        delays.append(node.next_attempt - clock.now)
        (publish,) = answers(actions)
        assert publish.answer.retry_in == round(delays[-1])
        assert engine.next_deadline() == node.next_attempt
        assert of(Activate, engine.handle(Tick())) == []
        clock.now = node.next_attempt
        assert of(Activate, engine.handle(Tick())) == [Activate("SN1", "acme", "thermo-v1")]
    assert delays[:5] == [5, 10, 20, 40, 80]
    assert delays[-1] == 900


def test_backoff_has_full_jitter(clock: Clock) -> None:
    draws: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    engine = Engine(SETTINGS, [], clock, record)
    engine.handle(Announced("SN1"))
    for _ in range(3):
        engine.handle(ActivationAnswered("SN1", Failed("timeout")))
        engine.handle(Tick())
    assert draws == [(0.0, 5.0), (0.0, 10.0), (0.0, 20.0)]
    assert backoff_ceiling(500, 5.0, 2.0, 900.0) == 900.0


def test_pending_reannounce_is_answered_without_a_request(engine: Engine, clock: Clock) -> None:
    _pending(engine)
    clock.advance(2)
    actions = engine.handle(Announced("SN1"))
    assert of(Activate, actions) == []
    assert answers(actions)[0].answer.retry_in == 3


def test_next_attempt_survives_a_restart(clock: Clock) -> None:
    first = Engine(SETTINGS, [], clock, upper)
    first.handle(Announced("SN1"))
    saved = of(SaveNode, first.handle(ActivationAnswered("SN1", Failed("timeout"))))
    restarted = Engine(SETTINGS, [saved[-1].node], clock, upper)
    assert restarted.next_deadline() == clock.now + 5
    clock.advance(5)
    assert of(Activate, restarted.handle(Tick())) == [Activate("SN1", "acme", "thermo-v1")]


def test_a_request_in_flight_at_stop_is_settled_from_the_keyring_first(clock: Clock) -> None:
    restarted = _recovering(clock)
    assert of(Activate, restarted.handle(Tick())) == []
    assert restarted.start() == [LookupCik("SN1", "acme", "thermo-v1")]
    actions = restarted.handle(CikLookedUp("SN1", CIK))
    assert of(Activate, actions) == []
    (publish,) = answers(actions)
    assert publish.answer.cik == CIK
    node = restarted.node("SN1")
    assert node is not None
    assert node.state is State.ACTIVATED


def test_a_request_in_flight_at_stop_without_a_stored_cik_is_sent_again(clock: Clock) -> None:
    restarted = _recovering(clock)
    restarted.start()
    actions = restarted.handle(CikLookedUp("SN1", None))
    assert of(Activate, actions) == [Activate("SN1", "acme", "thermo-v1")]


def test_an_unreadable_keyring_makes_the_node_pending_not_stuck(
    engine: Engine, clock: Clock
) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    (publish,) = answers(engine.handle(CikLookedUp("SN1", None, LOST)))
    assert publish.answer.status == "pending"
    assert LOST in (publish.answer.message or "")
    node = engine.node("SN1")
    assert node is not None
    assert node.next_attempt is not None
    clock.now = node.next_attempt
    assert of(Activate, engine.handle(Tick())) == [Activate("SN1", "acme", "thermo-v1")]


@pytest.mark.parametrize("setup", [_pending, _rejected])
def test_a_reannounce_with_another_allowed_model_is_used_next(
    setup: Callable[[Engine], list[Action]], engine: Engine, clock: Clock
) -> None:
    setup(engine)
    engine.handle(Announced("SN1", model="hygro"))
    clock.advance(3600)
    actions = engine.handle(Tick()) + engine.handle(Announced("SN1", model="hygro"))
    assert of(Activate, actions) == [Activate("SN1", "acme", "hygro")]


def test_an_activated_node_keeps_its_model(engine: Engine) -> None:
    _activated(engine)
    actions = engine.handle(Announced("SN1", model="hygro"))
    assert of(LookupCik, actions) == [LookupCik("SN1", "acme", "thermo-v1")]


def test_expiry_warning_once(engine: Engine, clock: Clock) -> None:
    _pending(engine)
    clock.advance(EXPIRY_WINDOW + 1)
    warnings: list[Log] = []
    for _ in range(30):
        actions = engine.handle(Tick())
        warnings += [a for a in actions if isinstance(a, Log) and a.kind == "expiry_warning"]
        if of(Activate, actions):
            engine.handle(ActivationAnswered("SN1", Failed("timeout")))
        deadline = engine.next_deadline()
        assert deadline is not None
        clock.now = max(clock.now, deadline)
    assert len(warnings) == 1
    assert warnings[0].level == logging.WARNING
    node = engine.node("SN1")
    assert node is not None
    assert node.expiry_warned


def test_no_expiry_warning_for_activated_nodes(engine: Engine, clock: Clock) -> None:
    _activated(engine)
    clock.advance(EXPIRY_WINDOW * 2)
    assert engine.handle(Tick()) == []
    assert engine.next_deadline() is None


def test_response_targets_are_answered_with_the_result(engine: Engine) -> None:
    first = ResponseTarget("gatewayd/nodes/SN1/reply", b"1")
    second = ResponseTarget("gatewayd/nodes/SN1/reply", b"2")
    engine.handle(Announced("SN1", response=first))
    engine.handle(Announced("SN1", response=second))
    (publish,) = answers(engine.handle(ActivationAnswered("SN1", Issued(CIK))))
    assert publish.responses == (first, second)
    _, publish_again = (
        engine.handle(Announced("SN1")),
        answers(engine.handle(CikLookedUp("SN1", CIK)))[0],
    )
    assert publish_again.responses == ()


def test_model_outside_models_is_an_invalid_request(engine: Engine) -> None:
    actions = engine.handle(Announced("SN1", model="toaster"))
    (publish,) = answers(actions)
    assert publish.answer.reason is Reason.INVALID_REQUEST
    assert engine.node("SN1") is None


def test_bad_announce_is_answered_when_addressable(engine: Engine) -> None:
    (publish,) = answers(engine.handle(BadAnnounce("not JSON", "SN1")))
    assert publish.answer.reason is Reason.INVALID_REQUEST
    assert answers(engine.handle(BadAnnounce("not an announce topic"))) == []


def test_drain_starts_no_request_and_keeps_nodes_pending(engine: Engine, clock: Clock) -> None:
    _pending(engine)
    engine.handle(Drain())
    clock.advance(3600)
    assert of(Activate, engine.handle(Tick())) == []
    actions = engine.handle(Announced("SN2"))
    assert of(Activate, actions) == []
    (save,) = of(SaveNode, actions)
    assert save.node.state is State.PENDING


def test_counts(engine: Engine) -> None:
    _activated(engine)
    engine.handle(Announced("SN2"))
    counts = engine.counts()
    assert counts[State.ACTIVATED] == 1
    assert counts[State.ACTIVATING] == 1
    assert counts[State.REJECTED] == 0


def test_unexpected_answer_is_logged_not_raised(engine: Engine) -> None:
    _rejected(engine)
    actions = engine.handle(ActivationAnswered("SN1", Refused(404)))
    assert [a.kind for a in actions if isinstance(a, Log)] == ["unexpected"]
    assert kinds(actions) == []


def test_an_unexpected_cik_is_still_stored(engine: Engine) -> None:
    actions = engine.handle(ActivationAnswered("nobody", Issued(CIK)))
    assert of(StoreCik, actions) == [StoreCik("nobody", "acme", "thermo-v1", CIK)]
    assert [a.kind for a in actions if isinstance(a, Log)] == ["unexpected"]


def test_each_request_is_written_ahead(engine: Engine, clock: Clock) -> None:
    actions = engine.handle(Announced("SN1"))
    (save,) = of(SaveNode, actions)
    assert (save.node.request_started, save.node.request_form) == (clock.now, "onep")
    assert actions.index(save) < actions.index(of(Activate, actions)[0])


def test_a_409_after_a_restart_with_nothing_stored_needs_reenable(clock: Clock) -> None:
    restarted = _recovering(clock)
    restarted.start()
    assert of(Activate, restarted.handle(CikLookedUp("SN1", None)))
    restarted.handle(ActivationAnswered("SN1", Refused(409)))
    (publish,) = answers(restarted.handle(CikLookedUp("SN1", None)))
    node = restarted.node("SN1")
    assert node is not None
    assert node.state is State.NEEDS_REENABLE
    assert publish.answer.reason is Reason.NOT_ACTIVATABLE
    assert "re-enable the device in Portals" in (publish.answer.message or "")


def test_a_409_after_a_plain_failure_is_an_ordinary_rejection(engine: Engine, clock: Clock) -> None:
    engine.handle(Announced("SN1"))
    engine.handle(ActivationAnswered("SN1", Failed("connection refused")))
    clock.advance(3600)
    engine.handle(Tick())
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    engine.handle(CikLookedUp("SN1", None))
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.REJECTED


def test_auto_reenable_asks_once_then_a_409_is_a_plain_rejection(clock: Clock) -> None:
    engine = Engine(AUTO, [], clock, upper)
    assert of(Reenable, _lost(engine, clock)) == [Reenable("SN1", "acme", "thermo-v1")]
    assert of(Activate, engine.handle(ReenableAnswered("SN1")))
    engine.handle(ActivationAnswered("SN1", Refused(409)))
    actions = engine.handle(CikLookedUp("SN1", None))
    assert of(Reenable, actions) == []
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.REJECTED


def test_a_reenable_cut_short_by_a_stop_is_sent_again_at_start(clock: Clock) -> None:
    engine = Engine(AUTO, [], clock, upper)
    _lost(engine, clock)
    saved = engine.node("SN1")
    assert saved is not None
    assert saved.state is State.NEEDS_REENABLE
    restarted = Engine(AUTO, [saved], clock, upper)
    assert restarted.start() == [Reenable("SN1", "acme", "thermo-v1")]
    (publish,) = answers(restarted.handle(Announced("SN1")))
    assert publish.answer.status == "pending"
    assert of(Activate, restarted.handle(ReenableAnswered("SN1")))


def test_a_failed_reenable_hands_over_to_a_person(clock: Clock) -> None:
    engine = Engine(AUTO, [], clock, upper)
    _lost(engine, clock)
    (publish,) = answers(engine.handle(ReenableAnswered("SN1", "HTTP 401")))
    assert publish.answer.status == "rejected"
    assert "re-enable the device in Portals" in (publish.answer.message or "")
    failed = engine.node("SN1")
    assert failed is not None
    assert Engine(AUTO, [failed], clock, upper).start() == []
    assert answers(engine.handle(Announced("SN1")))[0].answer.status == "rejected"


# ---------------------------------------------------------------- commands


def results(actions: list[Action]) -> list[Result]:
    return [a for a in actions if isinstance(a, Result)]


def test_republish_answers_after_the_keyring_is_read(engine: Engine) -> None:
    _activated(engine)
    (lookup,) = of(LookupCik, engine.handle(Republish("SN1")))
    assert lookup == LookupCik("SN1", "acme", "thermo-v1")
    actions = engine.handle(CikLookedUp("SN1", CIK))
    (publish,) = answers(actions)
    assert publish.answer.cik == CIK
    assert results(actions) == [Result(ok=True, message="SN1: credentials published again")]
    assert "republished" in [a.kind for a in of(Log, actions)]


def test_republish_of_a_missing_cik_says_so(engine: Engine) -> None:
    _activated(engine)
    engine.handle(Republish("SN1"))
    actions = engine.handle(CikLookedUp("SN1", None))
    (result,) = results(actions)
    assert not result.ok
    assert "missing from the keyring" in result.message
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.REJECTED


def test_an_announce_lookup_gives_no_result(engine: Engine) -> None:
    _activated(engine)
    engine.handle(Announced("SN1"))
    assert results(engine.handle(CikLookedUp("SN1", CIK))) == []


@pytest.mark.parametrize(
    ("setup", "command", "said"),
    [
        (_activating, Republish("SN1"), "not activated (it is activating)"),
        (_pending, Republish("SN1"), "not activated (it is pending)"),
        (_activated, Retry("SN1"), "already activated"),
        (_activating, Retry("SN1"), "a request about it is in flight (it is activating)"),
        (_activating, Forget("SN1"), "a request about it is in flight"),
        (lambda e: [], Retry("SN1"), "no such node"),
        (lambda e: [], Forget("SN1"), "no such node"),
        (lambda e: [], Republish("SN1"), "no such node"),
    ],
)
def test_a_command_that_cannot_act_is_refused_and_changes_nothing(
    engine: Engine,
    setup: Callable[[Engine], object],
    command: Republish | Retry | Forget,
    said: str,
) -> None:
    setup(engine)
    before = engine.node("SN1")
    (result,) = engine.handle(command)
    assert isinstance(result, Result)
    assert not result.ok
    assert said in result.message
    assert engine.node("SN1") == before


def test_retry_of_a_rejection_asks_at_once_and_clears_it(engine: Engine) -> None:
    _rejected(engine)
    actions = engine.handle(Retry("SN1"))
    assert of(Activate, actions) == [Activate("SN1", "acme", "thermo-v1")]
    node = engine.node("SN1")
    assert node is not None
    assert (node.state, node.reason, node.rejected_at) == (State.ACTIVATING, None, None)
    assert results(actions)[0].ok


def test_retry_while_gatewayd_re_enables_is_refused(clock: Clock) -> None:
    engine = Engine(AUTO, [], clock, upper)
    _lost(engine, clock)
    (result,) = engine.handle(Retry("SN1"))
    assert isinstance(result, Result)
    assert "re-enabling" in result.message


@pytest.mark.parametrize("setup", [_activated, _pending, _rejected])
def test_forget_deletes_cik_and_record_and_the_counts_follow(
    engine: Engine, clock: Clock, setup: Callable[[Engine], object]
) -> None:
    setup(engine)
    node = engine.node("SN1")
    assert node is not None
    actions = engine.handle(Forget("SN1"))
    assert of(DeleteNode, actions) == [DeleteNode("SN1", "acme", "thermo-v1")]
    assert results(actions)[0].ok
    assert engine.node("SN1") is None
    assert sum(engine.counts().values()) == 0
    clock.advance(EXPIRY_WINDOW + 1)  # no retry and no expiry warning for it any more
    assert engine.handle(Tick()) == []
    # a forgotten node that announces again is a new node
    assert kinds(engine.handle(Announced("SN1"))) == ["SaveNode", "Activate"]


def test_beyond_max_pending_a_new_node_is_told_to_come_back_and_nothing_is_kept(
    clock: Clock,
) -> None:
    settings = Settings(vendor="acme", model="thermo-v1", models=frozenset({"thermo-v1"}))
    engine = Engine(dataclasses.replace(settings, max_pending=2), [], clock, upper)
    engine.handle(Announced("SN1"))
    engine.handle(Announced("SN2"))
    actions = engine.handle(Announced("SN3"))
    assert kinds(actions) == ["Publish"]
    (publish,) = answers(actions)
    assert (publish.answer.status, publish.answer.retry_in) == ("pending", 30)
    assert engine.node("SN3") is None
    engine.handle(ActivationAnswered("SN1", Refused(404)))  # one leaves the waiting set
    assert kinds(engine.handle(Announced("SN3"))) == ["SaveNode", "Activate"]


def test_the_readme_shows_the_transition_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert as_table() in readme, "run make readme-table"
    assert as_table().count("\n") == len(TRANSITIONS) + 2


def test_a_node_offering_the_very_cik_stored_causes_no_check(engine: Engine) -> None:
    _activated(engine)
    assert kinds(engine.handle(Announced("SN1", cik=CIK))) == ["LookupCik"]
    assert kinds(engine.handle(CikLookedUp("SN1", CIK))) == ["Publish"]


def test_the_offered_cik_refused_too_activates_the_node_again(engine: Engine, clock: Clock) -> None:
    _replacing(engine, clock)
    actions = engine.handle(CikChecked("SN1", OTHER, Verdict.REFUSED, "HTTP 401"))
    assert kinds(actions) == ["SaveNode", "RetireCik", "Activate"]
    node = engine.node("SN1")
    assert node is not None
    assert node.reason is Reason.CIK_REVOKED


def test_an_offered_cik_not_adopted_goes_on_as_a_plain_announce(engine: Engine) -> None:
    engine.handle(Announced("SN1", cik=OTHER))
    actions = engine.handle(CikChecked("SN1", OTHER, Verdict.REFUSED, "HTTP 401"))
    assert kinds(actions) == ["SaveNode", "Activate"]


def test_a_rotation_found_at_start_never_goes_back_to_the_old_cik(clock: Clock) -> None:
    """Its re-enable may have been carried out before the stop: a refusal of the one sent
    again keeps the node rotating (asked again, backed off), never activated with the old
    CIK; a stop meanwhile sends no re-enable."""
    node = Node("SN1", "acme", "thermo-v1", State.ROTATING, clock.now - 60, reason=Reason.ROTATION)
    engine = Engine(SETTINGS, [node], clock, upper)
    assert kinds(engine.start()) == ["Reenable"]
    actions = engine.handle(ReenableAnswered("SN1", "HTTP 403"))  # a proxy's, say
    rotating = engine.node("SN1")
    assert rotating is not None
    assert (rotating.state, rotating.uncertain) == (State.ROTATING, True)
    assert of(Publish, actions) == []
    answer = answers(engine.handle(Announced("SN1")))[0].answer
    assert (answer.status, answer.cik) == ("pending", None)
    clock.advance(3600)
    assert kinds(engine.handle(Tick())) == ["Reenable"]
    engine.handle(ReenableAnswered("SN1", "HTTP 401"))
    engine.handle(Drain())
    clock.advance(3600)
    assert kinds(engine.handle(Tick())) == []  # no re-enable while gatewayd stops


def test_rotating_a_node_first_seen_long_ago_warns_of_no_expiry(clock: Clock) -> None:
    node = Node("SN1", "acme", "thermo-v1", State.ACTIVATED, clock.now - 3 * EXPIRY_WINDOW)
    engine = Engine(SETTINGS, [node], clock, upper)
    engine.handle(Rotate("SN1"))
    clock.advance(1)
    assert engine.handle(Tick()) == []
    engine.handle(ReenableAnswered("SN1"))
    clock.advance(1)
    assert engine.handle(Tick()) == []


def test_a_node_saying_its_cik_is_refused_while_it_is_rotated_waits_for_the_new_one(
    clock: Clock,
) -> None:
    """The question gatewayd/core/README.md walks through: answered pending, in words that
    say why; no check, and never the old CIK (the re-enable may have killed it)."""
    engine = Engine(SETTINGS, [], clock, upper)
    _activated(engine)
    engine.handle(Rotate("SN1"))
    actions = engine.handle(Announced("SN1", cik_rejected=True, cik=CIK))
    assert kinds(actions) == ["Publish"]
    (published,) = of(Publish, actions)
    answer = published.answer
    assert (answer.status, answer.cik, answer.retry_in) == ("pending", None, 5)
    assert answer.message is not None
    assert "rotating" in answer.message
    node = engine.node("SN1")
    assert node is not None
    assert node.state is State.ROTATING
