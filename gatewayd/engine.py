"""The node state machine: events in, actions out, no I/O.

Everything that decides what happens to a node lives in this file, and the
decisions themselves are one table, ``TRANSITIONS``: for a node's state and a
trigger (an event, sharpened by a guard such as "the rejection is older than
``rejected_retry_after``"), the next state and the effects to emit, in order.

The engine never sleeps, reads a clock of its own or touches a socket, a file
or a thread. Time comes from the injected ``clock``; randomness (the jitter of
retries) from the injected ``rng``. The daemon feeds it events from its one
queue and carries out the actions it returns, in order.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from gatewayd.events import (
    Action,
    Activate,
    ActivationAnswered,
    Announced,
    Answer,
    BadAnnounce,
    CikLookedUp,
    Drain,
    Event,
    Failed,
    Issued,
    Log,
    LookupCik,
    Node,
    Publish,
    Reason,
    Refused,
    ResponseTarget,
    SaveNode,
    State,
    StoreCik,
    Tick,
)
from gatewayd.secret import Secret

EXPIRY_WINDOW: Final = 24 * 3600.0
"""Exosite expires a device not activated within 24 h of being added."""

MAX_WAITING_RESPONSES: Final = 8
"""Response topics remembered per node until it can be answered."""


class Trigger(enum.Enum):
    ANNOUNCE = "announce"
    ANNOUNCE_AFTER_HOLD = "announce after the rejection hold"
    ISSUED = "200"
    REFUSED = "refused"
    CONFLICT = "409"
    FAILED = "transient failure"
    CIK_FOUND = "CIK found"
    CIK_MISSING = "no CIK stored"
    RETRY_DUE = "retry due"


class Effect(enum.Enum):
    SAVE = "save the node's record"
    REQUEST = "send an activation request"
    STORE = "store the CIK"
    LOOKUP = "read the stored CIK"
    SCHEDULE = "schedule the next attempt"
    ANSWER_CIK = "publish the credentials"
    ANSWER_PENDING = "publish pending, with retry_in"
    ANSWER_REJECTED = "publish the recorded rejection"
    AWAIT = "answer with the request in flight"


_NEW: Final = None
"""The 'state' of a serial gatewayd has never seen."""

TRANSITIONS: Final[Mapping[tuple[State | None, Trigger], tuple[State, tuple[Effect, ...]]]] = {
    # first announce: write the record ahead of the request
    (_NEW, Trigger.ANNOUNCE): (State.ACTIVATING, (Effect.SAVE, Effect.REQUEST)),
    # re-announces never start a second request for a serial
    (State.ACTIVATING, Trigger.ANNOUNCE): (State.ACTIVATING, (Effect.AWAIT,)),
    (State.PENDING, Trigger.ANNOUNCE): (State.PENDING, (Effect.ANSWER_PENDING,)),
    (State.ACTIVATED, Trigger.ANNOUNCE): (State.ACTIVATED, (Effect.LOOKUP,)),
    (State.REJECTED, Trigger.ANNOUNCE): (State.REJECTED, (Effect.ANSWER_REJECTED,)),
    (State.REJECTED, Trigger.ANNOUNCE_AFTER_HOLD): (
        State.ACTIVATING,
        (Effect.SAVE, Effect.REQUEST),
    ),
    # Exosite's answers
    (State.ACTIVATING, Trigger.ISSUED): (
        State.ACTIVATED,
        (Effect.STORE, Effect.SAVE, Effect.ANSWER_CIK),
    ),
    (State.ACTIVATING, Trigger.REFUSED): (State.REJECTED, (Effect.SAVE, Effect.ANSWER_REJECTED)),
    (State.ACTIVATING, Trigger.CONFLICT): (State.ACTIVATING, (Effect.LOOKUP,)),
    (State.ACTIVATING, Trigger.FAILED): (
        State.PENDING,
        (Effect.SCHEDULE, Effect.SAVE, Effect.ANSWER_PENDING),
    ),
    # the keystore's answers
    (State.ACTIVATING, Trigger.CIK_FOUND): (State.ACTIVATED, (Effect.SAVE, Effect.ANSWER_CIK)),
    (State.ACTIVATING, Trigger.CIK_MISSING): (
        State.REJECTED,
        (Effect.SAVE, Effect.ANSWER_REJECTED),
    ),
    (State.ACTIVATED, Trigger.CIK_FOUND): (State.ACTIVATED, (Effect.ANSWER_CIK,)),
    (State.ACTIVATED, Trigger.CIK_MISSING): (
        State.REJECTED,
        (Effect.SAVE, Effect.ANSWER_REJECTED),
    ),
    # timers
    (State.PENDING, Trigger.RETRY_DUE): (State.ACTIVATING, (Effect.SAVE, Effect.REQUEST)),
}

_REFUSALS: Final[Mapping[int, tuple[Reason, str]]] = {
    404: (Reason.UNKNOWN_SERIAL, "Exosite does not know this serial number"),
    403: (Reason.INVALID_VENDOR_MODEL, "Exosite does not accept this vendor/model pair"),
    409: (
        Reason.NOT_ACTIVATABLE,
        (
            "Exosite refused activation: the device is not added to a portal, is already "
            "activated, or its 24 h activation window expired; re-enable it in Portals"
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What the engine needs from the configuration; replaced on reload."""

    vendor: str
    model: str
    models: frozenset[str]
    rejected_retry_after: float = 300.0
    backoff_base: float = 5.0
    backoff_factor: float = 2.0
    backoff_cap: float = 15 * 60.0


def compute_backoff(
    attempt: int, settings: Settings, uniform: Callable[[float, float], float]
) -> float:
    """Full-jitter exponential backoff for the ``attempt``-th failure in a row (1-based)."""
    exponent = min(max(attempt - 1, 0), 64)
    ceiling = min(settings.backoff_cap, settings.backoff_base * settings.backoff_factor**exponent)
    return uniform(0.0, ceiling)


class Engine:
    """Owns every node's record; one thread calls :meth:`handle`."""

    def __init__(
        self,
        settings: Settings,
        nodes: Iterable[Node],
        clock: Callable[[], float],
        uniform: Callable[[float, float], float],
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._uniform = uniform
        self._nodes: dict[str, Node] = {}
        self._waiting: dict[str, list[ResponseTarget]] = {}
        self._timers: list[tuple[float, str]] = []
        self._draining = False
        now = clock()
        for stored in nodes:
            node = stored
            if node.state is State.ACTIVATING:
                # gatewayd stopped with this request in flight: ask again now
                node = dataclasses.replace(node, state=State.PENDING, next_attempt=now)
            self._nodes[node.sn] = node
            self._arm(None, node)

    # ------------------------------------------------------------ queries

    def node(self, sn: str) -> Node | None:
        return self._nodes.get(sn)

    def counts(self) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        for node in self._nodes.values():
            counts[node.state] += 1
        return counts

    def next_deadline(self) -> float | None:
        """When :class:`Tick` next has something to do, or None."""
        while self._timers:
            when, sn = self._timers[0]
            if self._timer_live(when, sn):
                return when
            heapq.heappop(self._timers)
        return None

    # ------------------------------------------------------------- events

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Announced(sn=sn, model=model, response=response):
                return self._announced(sn, model, response)
            case BadAnnounce():
                return self._bad_announce(event)
            case ActivationAnswered(sn=sn, outcome=outcome):
                return self._answered(sn, outcome)
            case CikLookedUp(sn=sn, cik=cik):
                trigger = Trigger.CIK_FOUND if cik is not None else Trigger.CIK_MISSING
                return self._fire(sn, trigger, cik=cik)
            case Tick():
                return self._tick()
            case Drain():
                self._draining = True
                return []

    def _announced(
        self, sn: str, model: str | None, response: ResponseTarget | None
    ) -> list[Action]:
        if model is not None and model not in self.settings.models:
            bad = BadAnnounce(f"model {model!r} is not one of the allowed models", sn, response)
            return self._bad_announce(bad)
        if response is not None:
            waiting = self._waiting.setdefault(sn, [])
            if response not in waiting:
                waiting.append(response)
                del waiting[:-MAX_WAITING_RESPONSES]
        node = self._nodes.get(sn)
        actions: list[Action] = [
            Log("announce", logging.DEBUG, "announce received", sn, _state(node))
        ]
        if node is None:
            now = self._clock()
            node = Node(
                sn, self.settings.vendor, model or self.settings.model, State.ACTIVATING, now
            )
            self._nodes[sn] = node
            self._arm(None, node)
            return actions + self._apply(node, (_NEW, Trigger.ANNOUNCE))
        trigger = Trigger.ANNOUNCE
        if node.state is State.REJECTED and self._hold_over(node):
            trigger = Trigger.ANNOUNCE_AFTER_HOLD
        return actions + self._fire(sn, trigger)

    def _bad_announce(self, event: BadAnnounce) -> list[Action]:
        actions: list[Action] = [
            Log("invalid_request", logging.WARNING, f"announce ignored: {event.message}", event.sn)
        ]
        if event.sn is not None:
            answer = Answer(
                event.sn, "rejected", reason=Reason.INVALID_REQUEST, message=event.message
            )
            responses = (event.response,) if event.response is not None else ()
            actions.append(Publish(answer, responses))
        return actions

    def _answered(self, sn: str, outcome: Issued | Refused | Failed) -> list[Action]:
        match outcome:
            case Issued(cik=cik):
                return self._fire(sn, Trigger.ISSUED, cik=cik, outcome=outcome)
            case Refused(http_status=409):
                return self._fire(sn, Trigger.CONFLICT, outcome=outcome)
            case Refused():
                return self._fire(sn, Trigger.REFUSED, outcome=outcome)
            case Failed():
                return self._fire(sn, Trigger.FAILED, outcome=outcome)

    def _tick(self) -> list[Action]:
        now = self._clock()
        actions: list[Action] = []
        while self._timers and self._timers[0][0] <= now:
            when, sn = heapq.heappop(self._timers)
            if not self._timer_live(when, sn):
                continue
            node = self._nodes[sn]
            if node.state is State.PENDING and node.next_attempt == when:
                if self._draining:
                    continue
                actions += self._fire(sn, Trigger.RETRY_DUE)
            else:
                actions += self._warn_expiry(node)
        return actions

    # -------------------------------------------------------- transitions

    def _fire(
        self,
        sn: str,
        trigger: Trigger,
        cik: Secret | None = None,
        outcome: Issued | Refused | Failed | None = None,
    ) -> list[Action]:
        node = self._nodes.get(sn)
        key = (node.state if node else None, trigger)
        if node is None or key not in TRANSITIONS:
            state = "an unknown node" if node is None else f"state {node.state.value}"
            actions: list[Action] = [
                Log("unexpected", logging.ERROR, f"{trigger.value} for {state}", sn, _state(node))
            ]
            if cik is not None and trigger is Trigger.ISSUED:
                # a 200 body is never dropped, whatever became of the node meanwhile
                vendor, model = (node.vendor, node.model) if node else (None, None)
                vendor = vendor or self.settings.vendor
                actions.insert(0, StoreCik(sn, vendor, model or self.settings.model, cik))
            return actions
        return self._apply(node, key, cik, outcome)

    def _apply(
        self,
        node: Node,
        key: tuple[State | None, Trigger],
        cik: Secret | None = None,
        outcome: Issued | Refused | Failed | None = None,
    ) -> list[Action]:
        target, effects = TRANSITIONS[key]
        trigger = key[1]
        now = self._clock()
        before = node
        node = self._next_record(node, target, trigger, outcome, now)
        if Effect.REQUEST in effects and self._draining:
            node = dataclasses.replace(node, state=State.PENDING, next_attempt=now)
            effects = (Effect.SAVE,)
        self._nodes[node.sn] = node
        self._arm(before, node)
        actions: list[Action] = []
        for effect in effects:
            actions += self._effect(effect, node, trigger, cik, outcome, now)
        return actions

    def _next_record(
        self,
        node: Node,
        target: State,
        trigger: Trigger,
        outcome: Issued | Refused | Failed | None,
        now: float,
    ) -> Node:
        changes: dict[str, object] = {"state": target}
        if target is State.ACTIVATED and node.state is not State.ACTIVATED:
            changes |= {"activated_at": now, "next_attempt": None, "reason": None}
            changes |= {
                "last_error": None,
                "http_status": 200 if trigger is Trigger.ISSUED else 409,
            }
        elif target is State.REJECTED and node.state is not State.REJECTED:
            reason, error, status = _rejection(trigger, outcome, node)
            changes |= {"reason": reason, "last_error": error, "http_status": status}
            changes |= {"rejected_at": now, "next_attempt": None}
        elif target is State.PENDING and isinstance(outcome, Failed):
            attempts = node.attempts + 1
            delay = compute_backoff(attempts, self.settings, self._uniform)
            changes |= {"attempts": attempts, "next_attempt": now + delay}
            changes |= {"last_error": outcome.error, "http_status": outcome.http_status}
        elif target is State.ACTIVATING and node.state is State.REJECTED:
            changes |= {"reason": None, "rejected_at": None, "attempts": 0}
        return dataclasses.replace(node, **changes)  # type: ignore[arg-type]

    def _effect(
        self,
        effect: Effect,
        node: Node,
        trigger: Trigger,
        cik: Secret | None,
        outcome: Issued | Refused | Failed | None,
        now: float,
    ) -> list[Action]:
        match effect:
            case Effect.SAVE:
                return [SaveNode(node)]
            case Effect.REQUEST:
                return [Activate(node.sn, node.vendor, node.model)]
            case Effect.STORE:
                return self._store(node, cik, outcome)
            case Effect.LOOKUP:
                return [LookupCik(node.sn, node.vendor, node.model)]
            case Effect.SCHEDULE:
                return [_log_pending(node, now)]
            case Effect.ANSWER_CIK | Effect.ANSWER_PENDING | Effect.ANSWER_REJECTED:
                return self._answer(effect, node, trigger, cik, now)
            case Effect.AWAIT:
                return []

    def _answer(
        self, effect: Effect, node: Node, trigger: Trigger, cik: Secret | None, now: float
    ) -> list[Action]:
        if effect is Effect.ANSWER_CIK:
            kind = "activated" if trigger is Trigger.ISSUED else "republished"
            answer = Answer(node.sn, "activated", node.vendor, node.model, cik)
            log = Log(kind, logging.INFO, f"credentials {kind}", node.sn, node.state, 200)
            return [self._publish(answer), log]
        if effect is Effect.ANSWER_PENDING:
            retry_in = max(0, math.ceil((node.next_attempt or now) - now))
            message = _pending_message(node)
            return [self._publish(Answer(node.sn, "pending", retry_in=retry_in, message=message))]
        answer = Answer(
            node.sn,
            "rejected",
            reason=node.reason,
            http_status=node.http_status,
            message=node.last_error,
        )
        actions: list[Action] = [self._publish(answer)]
        if trigger is not Trigger.ANNOUNCE:
            message = f"rejected: {node.reason} ({node.last_error})"
            status = node.http_status
            actions.append(Log("rejected", logging.WARNING, message, node.sn, node.state, status))
        return actions

    def _store(self, node: Node, cik: Secret | None, outcome: object) -> list[Action]:
        assert cik is not None  # noqa: S101 (the ISSUED trigger always carries the CIK)
        actions: list[Action] = [StoreCik(node.sn, node.vendor, node.model, cik)]
        if isinstance(outcome, Issued) and not outcome.well_formed:
            actions.append(
                Log(
                    "cik_malformed",
                    logging.WARNING,
                    "Exosite's 200 body is not 40 printable characters; stored as received",
                    node.sn,
                    node.state,
                    200,
                )
            )
        return actions

    def _publish(self, answer: Answer) -> Publish:
        return Publish(answer, tuple(self._waiting.pop(answer.sn, ())))

    # --------------------------------------------------------------- timers

    def _arm(self, before: Node | None, node: Node) -> None:
        """Push the timers a change of record calls for, each once."""
        retry = node.state is State.PENDING and node.next_attempt is not None
        if retry and (before is None or before.next_attempt != node.next_attempt):
            heapq.heappush(self._timers, (node.next_attempt or 0.0, node.sn))
        watch = node.state is not State.ACTIVATED and not node.expiry_warned
        if watch and (before is None or before.state is State.ACTIVATED):
            heapq.heappush(self._timers, (node.first_seen + EXPIRY_WINDOW, node.sn))

    def _timer_live(self, when: float, sn: str) -> bool:
        node = self._nodes.get(sn)
        if node is None:
            return False
        if node.state is State.PENDING and node.next_attempt == when:
            return True
        return (
            node.state is not State.ACTIVATED
            and not node.expiry_warned
            and when == node.first_seen + EXPIRY_WINDOW
        )

    def _warn_expiry(self, node: Node) -> list[Action]:
        node = dataclasses.replace(node, expiry_warned=True)
        self._nodes[node.sn] = node
        hours = (self._clock() - node.first_seen) / 3600
        message = (
            f"not activated {hours:.0f} h after it was first seen: its Exosite activation "
            "window has probably expired; re-enable the device in Portals"
        )
        return [
            SaveNode(node),
            Log("expiry_warning", logging.WARNING, message, node.sn, node.state),
        ]

    def _hold_over(self, node: Node) -> bool:
        rejected_at = node.rejected_at if node.rejected_at is not None else node.first_seen
        return self._clock() - rejected_at >= self.settings.rejected_retry_after


def _state(node: Node | None) -> State | None:
    return None if node is None else node.state


def _rejection(
    trigger: Trigger, outcome: Issued | Refused | Failed | None, node: Node
) -> tuple[Reason, str, int | None]:
    if trigger is Trigger.CIK_MISSING and node.state is State.ACTIVATED:
        return Reason.NOT_ACTIVATABLE, "the stored CIK is missing from the keyring", None
    status = outcome.http_status if isinstance(outcome, Refused) else 409
    reason, message = _REFUSALS.get(status, (Reason.API_ERROR, "Exosite rejected the request"))
    return reason, f"{message} (HTTP {status})", status


def _pending_message(node: Node) -> str:
    if node.http_status is not None:
        return f"Exosite answered HTTP {node.http_status}; retrying"
    return f"Exosite unreachable ({node.last_error}); retrying"


def _log_pending(node: Node, now: float) -> Log:
    delay = (node.next_attempt or now) - now
    message = (
        f"activation failed ({node.last_error}); attempt {node.attempts}, next in {delay:.0f} s"
    )
    return Log("pending", logging.WARNING, message, node.sn, node.state, node.http_status)
