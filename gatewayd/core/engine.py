"""The node state machine: events in, actions out, no I/O.

Everything that decides what happens to a node lives here and in
``gatewayd.core.transitions``, whose one table, ``TRANSITIONS``, gives for a node's
state and a trigger the next state and the effects to emit, in order. This
module picks the trigger (an event, sharpened by a guard such as "the rejection
is older than ``rejected_retry_after``") and turns the effects into actions.

The engine never sleeps, reads a clock of its own or touches a socket, a file
or a thread. Time comes from two injected clocks: ``clock``, monotonic, for
every interval (``gatewayd.core.deadlines``), and ``wall`` for the times a record
keeps; randomness (the jitter of retries) from the injected ``uniform``. The
daemon feeds it events from its one queue and carries out the actions it
returns, in order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from gatewayd.core import records, replies
from gatewayd.core.deadlines import Deadlines
from gatewayd.core.events import (
    Action,
    Activate,
    ActivationAnswered,
    Announced,
    Answer,
    BadAnnounce,
    CikLookedUp,
    DeleteNode,
    Drain,
    Event,
    Failed,
    Forget,
    Issued,
    Log,
    LookupCik,
    Node,
    Outcome,
    Publish,
    Reenable,
    ReenableAnswered,
    Republish,
    RequestUnsent,
    ResponseTarget,
    Result,
    Retry,
    SaveNode,
    Settings,
    State,
    StoreCik,
    Tick,
)
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import TRANSITIONS, UNSETTLED, Effect, Trigger, refused, trigger_of

UNREADABLE_LOG_WINDOW: Final = 60.0
"""An activated node whose CIK cannot be read is logged about at most this often."""

MAX_WAITING_RESPONSES: Final = 8
"""Response topics remembered per node until it can be answered."""


_NODE_ACTIONS: Final[Mapping[Effect, type[Activate | LookupCik | Reenable]]] = {
    Effect.REQUEST: Activate,
    Effect.LOOKUP: LookupCik,
    Effect.REENABLE: Reenable,
}


class Engine:
    """Owns every node's record; one thread calls :meth:`handle`."""

    def __init__(
        self,
        settings: Settings,
        nodes: Iterable[Node],
        clock: Callable[[], float],
        uniform: Callable[[float, float], float],
        wall: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` is monotonic: every interval runs on it. ``wall`` (by default the same
        clock) stamps the times a record keeps, to be stored and shown."""
        self.settings = settings
        self._clock = clock
        self._wall = wall or clock
        self._uniform = uniform
        self._nodes: dict[str, Node] = {}
        self._counts = dict.fromkeys(State, 0)
        self._waiting: dict[str, list[ResponseTarget]] = {}
        self._deadlines = Deadlines()
        self._draining = False
        self._republishing: set[str] = set()
        self._unreadable: dict[str, float] = {}
        """Activated nodes whose CIK the keystore could not read: when that was last logged."""
        for stored in nodes:
            node = stored
            if node.state is State.ACTIVATING:
                # the write-ahead says a request was in flight: it may have reached Exosite
                node = dataclasses.replace(node, state=State.RECOVERING, uncertain=True)
            self._put(node)
            self._arm(None, node, self._wall())

    def start(self) -> list[Action]:
        """What the last stop left unfinished: keyring reads for the nodes whose request was
        in flight, and the re-enables gatewayd had started by itself."""
        actions: list[Action] = []
        for node in self._nodes.values():
            if node.state is State.RECOVERING:
                actions.append(LookupCik(node.sn, node.vendor, node.model))
            elif self._reenabling(node):
                actions.append(Reenable(node.sn, node.vendor, node.model))
        return actions

    # ------------------------------------------------------------ queries

    def node(self, sn: str) -> Node | None:
        return self._nodes.get(sn)

    def nodes(self) -> Iterable[Node]:
        return self._nodes.values()

    def counts(self) -> dict[State, int]:
        return dict(self._counts)

    def unreadable(self) -> list[str]:
        """Activated nodes whose stored CIK could not be read when last asked for."""
        return sorted(self._unreadable)

    def next_deadline(self) -> float | None:
        """When :class:`Tick` next has something to do, or None."""
        return self._deadlines.next()

    # ------------------------------------------------------------- events

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Announced(sn=sn, model=model, response=response):
                return self._announced(sn, model, response)
            case BadAnnounce():
                return self._bad_announce(event)
            case ActivationAnswered() | RequestUnsent():
                return self._answered(event)
            case CikLookedUp():
                return self._looked_up(event)
            case ReenableAnswered(sn=sn, error=None):
                return self._fire(sn, Trigger.REENABLED)
            case ReenableAnswered(sn=sn, error=error):
                return self._fire(sn, Trigger.REENABLE_FAILED, outcome=Failed(str(error)))
            case Tick():
                return self._tick()
            case Drain():
                self._draining = True
                return []
            case Republish() | Retry() | Forget():
                return self._command(event)

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
        if node is None and self._busy():
            # no record and no request: the node is told to come back
            return [*actions, Publish(replies.busy(sn, self.settings.max_pending))]
        if node is None:
            settings = self.settings
            wall = self._wall()
            node = Node(sn, settings.vendor, model or settings.model, State.ACTIVATING, wall)
            self._put(node)
            self._arm(None, node, wall)
            return actions + self._apply(node, (None, Trigger.ANNOUNCE))
        if model is not None and model != node.model and node.state in UNSETTLED:
            # the node names another model now: its next request uses it
            node = dataclasses.replace(node, model=model)
            self._put(node)
        trigger = Trigger.ANNOUNCE
        held = node.state in {State.REJECTED, State.NEEDS_REENABLE}
        if self._reenabling(node):
            trigger = Trigger.ANNOUNCE_REENABLING
        elif held and self._hold_over(node):
            trigger = Trigger.ANNOUNCE_LATE
        return actions + self._fire(sn, trigger)

    def _bad_announce(self, event: BadAnnounce) -> list[Action]:
        message = f"announce ignored: {event.message}"
        actions: list[Action] = [Log("invalid_request", logging.WARNING, message, event.sn)]
        if event.sn is not None:
            answer = replies.invalid(event.sn, event.message)
            responses = (event.response,) if event.response is not None else ()
            actions.append(Publish(answer, responses))
        return actions

    def _tick(self) -> list[Action]:
        actions: list[Action] = []
        for sn, retry in self._deadlines.due(self._clock()):
            node = self._nodes[sn]
            if retry:
                if not self._draining:
                    actions += self._fire(sn, Trigger.RETRY_DUE)
            else:
                actions += self._warn_expiry(node)
        return actions

    # ------------------------------------------------------------ commands

    def _command(self, command: Republish | Retry | Forget) -> list[Action]:
        """``gatewayctl republish``, ``retry``, ``forget``: done, or refused saying why."""
        sn = command.sn
        if isinstance(command, Forget):
            return self._forget(sn)
        node = self._nodes.get(sn)
        trigger = Trigger.REPUBLISH if isinstance(command, Republish) else Trigger.RETRY
        refusal = None if node is None else refused(node, trigger)
        if node is not None and refusal is None and self._reenabling(node):
            refusal = "gatewayd is re-enabling it at Exosite; its activation follows"
        if node is None or refusal is not None:
            return [Result(ok=False, message=f"{sn}: {refusal or 'no such node'}")]
        text = "operator asked to retry now" if trigger is Trigger.RETRY else "republishing"
        actions: list[Action] = [Log("operator", logging.INFO, text, sn, node.state)]
        if trigger is Trigger.REPUBLISH:
            self._republishing.add(sn)  # the keyring's answer says how it went
        actions += self._apply(node, (node.state, trigger))
        after = self._nodes[sn]
        if trigger is Trigger.RETRY:
            done = "activation requested" if after.state is State.ACTIVATING else "queued"
            return [*actions, Result(ok=True, message=f"{sn}: {done} (was {node.state})")]
        return actions

    def _forget(self, sn: str) -> list[Action]:
        """``gatewayctl forget``: the record and the CIK go; never while a request is out."""
        node = self._nodes.get(sn)
        if node is None:
            return [Result(ok=False, message=f"{sn}: no such node")]
        if node.state in {State.ACTIVATING, State.RECOVERING} or self._reenabling(node):
            text = "a request about it is in flight; try again once it is answered"
            return [Result(ok=False, message=f"{sn}: {text}")]
        del self._nodes[sn]
        self._counts[node.state] -= 1
        self._waiting.pop(sn, None)
        self._unreadable.pop(sn, None)
        self._deadlines.forget(sn)
        what = "record and CIK deleted" if node.state is State.ACTIVATED else "record deleted"
        return [
            DeleteNode(sn, node.vendor, node.model),
            Log("forgotten", logging.WARNING, f"forgotten by the operator: {what}", sn, node.state),
            Result(ok=True, message=f"{sn}: forgotten ({what}; it was {node.state})"),
        ]

    # -------------------------------------------------------- transitions

    def _fire(
        self, sn: str, trigger: Trigger, cik: Secret | None = None, outcome: Outcome | None = None
    ) -> list[Action]:
        node = self._nodes.get(sn)
        key = (_state(node), trigger)
        if node is not None and key in TRANSITIONS:
            return self._apply(node, key, cik, outcome)
        where = "an unknown node" if node is None else f"state {key[0]}"
        actions: list[Action] = [
            Log("unexpected", logging.ERROR, f"{trigger.value} for {where}", sn, key[0])
        ]
        if cik is not None:
            # a 2xx body is never dropped, whatever became of the node meanwhile
            vendor = node.vendor if node else self.settings.vendor
            model = node.model if node else self.settings.model
            unverified = trigger is not Trigger.ISSUED
            actions.insert(0, StoreCik(sn, vendor, model, cik, unverified=unverified))
        return actions

    def _apply(
        self,
        node: Node,
        key: tuple[State | None, Trigger],
        cik: Secret | None = None,
        outcome: Outcome | None = None,
    ) -> list[Action]:
        target, effects = TRANSITIONS[key]
        now = self._wall()
        record = records.next_record(node, target, outcome, now, self.settings, self._uniform)
        if key[1] in {Trigger.REENABLED, Trigger.REENABLE_FAILED}:
            # re-enabled: a 409 from now on is not one this gateway caused; failed: a
            # person takes over, and a restart does not try again
            record = dataclasses.replace(record, uncertain=False)
        if Effect.REQUEST in effects and self._draining:
            record = dataclasses.replace(record, state=State.PENDING, next_attempt=now)
            effects = (Effect.SAVE,)
        self._put(record)
        self._arm(node, record, now)
        step = records.Step(record, key[1], now, cik, outcome)
        actions: list[Action] = []
        for effect in effects:
            actions += self._effect(effect, step)
        return actions

    def _effect(self, effect: Effect, step: records.Step) -> list[Action]:
        node = step.node
        match effect:
            case Effect.SAVE:
                return [SaveNode(node)]
            case Effect.REQUEST | Effect.LOOKUP | Effect.REENABLE:
                return [_NODE_ACTIONS[effect](node.sn, node.vendor, node.model)]
            case Effect.STORE:
                return records.store(step)
            case Effect.SCHEDULE:
                return [replies.pending_log(node, self._retry_in(node))]
            case Effect.TELL_CIK:
                kind = "activated" if step.trigger is Trigger.ISSUED else "republished"
                answer = replies.activated(node, step.cik)
                return [self._publish(answer), replies.credentials_log(node, kind)]
            case Effect.TELL_PENDING:
                return [self._publish(replies.pending(node, self._retry_in(node)))]
            case Effect.TELL_REJECTED:
                # a rejection is logged when it is made, not each time it is repeated
                repeated = step.trigger is Trigger.ANNOUNCE
                log = [] if repeated else [replies.rejected_log(node)]
                return [self._publish(replies.rejected(node)), *log]
            case Effect.WAIT:
                return []

    def _publish(self, answer: Answer) -> Publish:
        return Publish(answer, tuple(self._waiting.pop(answer.sn, ())))

    # --------------------------------------------------------------- timers

    def _arm(self, before: Node | None, node: Node, wall: float) -> None:
        """The deadlines a change of record calls for; ``wall``: the time it was made."""
        self._deadlines.arm(before, node, self._clock(), wall, self.settings.backoff_cap)

    def _retry_in(self, node: Node) -> float:
        return self._deadlines.retry_in(node.sn, self._clock())

    def _warn_expiry(self, node: Node) -> list[Action]:
        hours = self._deadlines.waited(node.sn, self._clock()) / 3600
        warned = dataclasses.replace(node, expiry_warned=True)
        self._put(warned)
        self._arm(node, warned, self._wall())
        return [SaveNode(warned), replies.expiry_log(warned, hours)]

    def _looked_up(self, event: CikLookedUp) -> list[Action]:
        actions = self._looked_up_cik(event)
        if event.sn in self._republishing:
            self._republishing.discard(event.sn)
            ok = event.cik is not None
            said = "credentials published again" if ok else event.error or replies.CIK_MISSING
            actions.append(Result(ok=ok, message=f"{event.sn}: {said}"))
        return actions

    def _looked_up_cik(self, event: CikLookedUp) -> list[Action]:
        sn = event.sn
        if event.error is not None:
            actions = self._fire(sn, Trigger.LOOKUP_FAILED, outcome=Failed(event.error))
            return actions + self._unreadable_log(sn, event.error)
        self._unreadable.pop(sn, None)
        if event.cik is not None:
            return self._fire(sn, Trigger.CIK_FOUND, cik=event.cik)
        node = self._nodes.get(sn)
        if node is None or node.state is not State.ACTIVATING or not node.uncertain:
            return self._fire(sn, Trigger.CIK_MISSING)
        # a 409, nothing stored, and our own request may have been given the CIK: lost
        lost = Trigger.CIK_LOST_AUTO if self.settings.auto_reenable else Trigger.CIK_LOST
        return self._fire(sn, lost)

    def _unreadable_log(self, sn: str, error: str) -> list[Action]:
        """An activated node whose CIK cannot be read: an error, once a minute at most."""
        node = self._nodes.get(sn)
        if node is None or node.state is not State.ACTIVATED:
            return []
        now = self._clock()
        said = self._unreadable.get(sn)
        if said is not None and now - said < UNREADABLE_LOG_WINDOW:
            return []
        self._unreadable[sn] = now
        return [replies.unreadable_log(node, error)]

    def _answered(self, event: ActivationAnswered | RequestUnsent) -> list[Action]:
        """Exosite's answer to a request, or the request held back unsent."""
        if isinstance(event, RequestUnsent):
            failed = Failed(f"not sent: {event.error}")
            return self._fire(event.sn, Trigger.UNSAVED, outcome=failed)
        outcome = event.outcome
        trigger = trigger_of(outcome)
        cik = None
        if isinstance(outcome, Issued):
            cik = outcome.cik
            if not outcome.well_formed:
                auto = self.settings.auto_reenable
                trigger = Trigger.MALFORMED_AUTO if auto else Trigger.MALFORMED
        return self._fire(event.sn, trigger, cik, outcome)

    def _reenabling(self, node: Node) -> bool:
        """gatewayd itself is re-enabling this node's serial (a failure clears ``uncertain``)."""
        return node.state is State.NEEDS_REENABLE and node.uncertain and self.settings.auto_reenable

    def _put(self, node: Node) -> None:
        old = self._nodes.get(node.sn)
        if old is not None:
            self._counts[old.state] -= 1
        self._counts[node.state] += 1
        self._nodes[node.sn] = node

    def _busy(self) -> bool:
        """As many nodes wait for Exosite as ``max_pending`` allows: new ones must wait."""
        counts = self._counts
        waiting = counts[State.ACTIVATING] + counts[State.PENDING] + counts[State.RECOVERING]
        return waiting >= self.settings.max_pending

    def _hold_over(self, node: Node) -> bool:
        held = self._deadlines.held_for(node.sn, self._clock())
        if held is None:  # a record without a rejection time: since it was first seen
            held = self._wall() - node.first_seen
        return held >= self.settings.rejected_retry_after


def _state(node: Node | None) -> State | None:
    return None if node is None else node.state
