"""The node state machine: events in, actions out, no I/O.

What happens to a node is a row of ``TRANSITIONS`` (:mod:`gatewayd.core.transitions`):
for its state and a trigger, the next state, the record's changes
(:mod:`gatewayd.core.records`) and the effects (:mod:`gatewayd.core.effects`).
This module only picks the trigger: an event, sharpened by a guard such as "the
rejection is older than ``rejected_retry_after``" or "gatewayd is stopping".

The engine never sleeps, reads a clock of its own or touches a socket, a file
or a thread. Time comes from two injected clocks: ``clock``, monotonic, for
every interval (:mod:`gatewayd.core.deadlines`), and ``wall`` for the times a
record keeps; randomness (the jitter of retries) from the injected ``uniform``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gatewayd.core import announces, checks, commands, imports, records, replies
from gatewayd.core.actions import Action, Log, Result
from gatewayd.core.book import Book
from gatewayd.core.checks import Checks
from gatewayd.core.deadlines import Deadlines
from gatewayd.core.effects import Effects, invalid
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
    Outcome,
    ReenableAnswered,
    Republish,
    RequestUnsent,
    Retry,
    Rotate,
    Tick,
    Verdict,
)
from gatewayd.core.model import Node, Reason, ResponseTarget, Settings, State
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import (
    TRANSITIONS,
    Effect,
    Row,
    Trigger,
    stopping,
    trigger_of,
)


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
        self._book = Book()
        self._deadlines = Deadlines()
        self._effects = Effects(self._book, self._deadlines, clock, lambda: self.settings)
        self._draining = False
        self._republishing: set[str] = set()
        self._reenables: set[str] = set()  # re-enables sent and not answered yet
        self._checks = Checks()
        self._guards = announces.Guards(
            self._busy, self._reenabling, self._hold_over, self._check, self._checks.under_way
        )
        for node in nodes:
            self._book.put(node)
            self._arm(None, node, self._wall())

    def start(self) -> list[Action]:
        """What the last stop left unfinished: keyring reads for the nodes whose request was
        in flight, and the re-enables gatewayd had started by itself."""
        actions: list[Action] = []
        for node in list(self._book.nodes()):
            actions += self._unfinished(node)
        return actions

    def _unfinished(self, node: Node) -> list[Action]:
        trigger = imports.unfinished(node, reenabling=self._reenabling(node))
        return [] if trigger is None else self._fire(node.sn, trigger)

    def node(self, sn: str) -> Node | None:
        return self._book.get(sn)

    def nodes(self) -> Iterable[Node]:
        return self._book.nodes()

    def counts(self) -> dict[State, int]:
        return self._book.counts()

    def unreadable(self) -> list[str]:
        """Activated nodes whose stored CIK could not be read when last asked for."""
        return self._book.unreadable()

    def next_deadline(self) -> float | None:
        """When :class:`Tick` next has something to do, or None."""
        return self._deadlines.next()

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Announced():
                return self._announced(event)
            case BadAnnounce():
                return invalid(event.sn, event.message, event.response)
            case ActivationAnswered():
                return self._answered(event)
            case RequestUnsent() | ReenableAnswered():
                return self._unsent_or_reenabled(event)
            case CikLookedUp():
                return self._looked_up(event)
            case CikChecked():
                return self._checked(event)
            case Tick():
                return self._tick()
            case Drain():
                self._draining = True
                return []
            case Republish() | Retry() | Forget() | Rotate() | Imported():
                return self._command(event)

    def _announced(self, event: Announced) -> list[Action]:
        sn, model, response = event.sn, event.model, event.response
        node = self._book.get(sn)
        if model is not None and model not in self.settings.models:
            text = f"model {model!r} is not one of the allowed models"
            return self._fire(sn, Trigger.ANNOUNCE_MODEL, response=response, detail=text)
        if response is not None:
            self._book.wait(sn, response)
        actions: list[Action] = [
            Log("announce", logging.DEBUG, "announce received", sn, _state(node))
        ]
        adopt = self.settings.adopt
        trigger = announces.trigger(event, node, self._guards, adopt=adopt)
        cik = None
        if trigger in {Trigger.ANNOUNCE_ADOPT, Trigger.ANNOUNCE_CHECK}:  # a check started
            cik = self._checks.announced(
                event, adopt=trigger is Trigger.ANNOUNCE_ADOPT, offers=adopt
            )
        return actions + self._fire(sn, trigger, model=model, cik=cik)

    def _checked(self, event: CikChecked) -> list[Action]:
        """Exosite's verdict on a CIK (:meth:`gatewayd.core.checks.Checks.after`)."""
        after = self._checks.after(event, self._clock(), self.settings.check_interval)
        node = self._book.get(event.sn)
        if after is None:
            text = "a verdict on a CIK no check waits for any more: ignored"
            return [Log("cik_checked", logging.DEBUG, text, event.sn, _state(node))]
        if isinstance(after, Announced):  # an offered CIK not adopted: as if never offered
            unknown = event.verdict is Verdict.UNKNOWN
            said = replies.not_adopted_log(event.sn, _state(node), event.detail, unknown=unknown)
            return [said, *self._announced(after)]
        failed = Failed(f"no verdict on the CIK: {after.detail}")  # a backoff row says why
        outcome = failed if after.trigger is Trigger.CHECK_UNKNOWN else None
        return self._fire(
            event.sn,
            after.trigger,
            cik=after.cik,
            detail=after.detail,
            model=after.model,
            outcome=outcome,
            retired=after.retired,
        )

    def _unsent_or_reenabled(self, event: RequestUnsent | ReenableAnswered) -> list[Action]:
        self._reenables.discard(event.sn)
        if isinstance(event, RequestUnsent):
            failed = Failed(f"not sent: {event.error}")
            return self._fire(event.sn, Trigger.UNSAVED, outcome=failed)
        failed_or_none = None if event.error is None else Failed(event.error)
        node = self._book.get(event.sn)
        trigger = Trigger.REENABLED if failed_or_none is None else Trigger.REENABLE_FAILED
        if (
            trigger is Trigger.REENABLE_FAILED
            and node is not None
            and node.state is State.ROTATING
            and (event.maybe_done or node.uncertain)
        ):  # this re-enable, or one before (a restart's), may have been carried out
            trigger = Trigger.REENABLE_MAYBE
        return self._fire(event.sn, trigger, outcome=failed_or_none)

    def _tick(self) -> list[Action]:
        actions: list[Action] = []
        for sn, retry in self._deadlines.due(self._clock()):
            actions += self._fire(sn, Trigger.RETRY_DUE if retry else Trigger.EXPIRY_DUE)
        return actions

    def _answered(self, event: ActivationAnswered) -> list[Action]:
        """Exosite's answer to a request; a 2xx with none of it in flight is kept too."""
        outcome = event.outcome
        cik = outcome.cik if isinstance(outcome, Issued) else None
        trigger = trigger_of(outcome, auto_reenable=self.settings.auto_reenable)
        node = self._book.get(event.sn)
        if cik is not None and _state(node) is not State.ACTIVATING:
            trigger = Trigger.ISSUED_UNASKED
        elif trigger is Trigger.ISSUED and node is not None and node.reason is Reason.ROTATION:
            trigger = Trigger.ISSUED_ROTATED
        return self._fire(event.sn, trigger, cik=cik, outcome=outcome)

    def _looked_up(self, event: CikLookedUp) -> list[Action]:
        sn, node, error = event.sn, self._book.get(event.sn), event.error
        if error is not None:
            actions = self._fire(sn, Trigger.LOOKUP_FAILED, outcome=Failed(error))
            if node is not None and node.state is State.ACTIVATED:
                actions += self._book.unreadable_log(node, error, self._clock())
        else:
            self._book.readable(sn)
            auto = self.settings.auto_reenable
            found = checks.found(
                node, event.cik, self._checks, auto_reenable=auto, retired=event.retired
            )
            actions = self._fire(sn, found, cik=event.cik)
        if error is not None or event.cik is None:
            self._checks.unsent(sn)  # nothing to check
        return actions + commands.republished(self._republishing, sn, event.cik, error)

    def import_refusal(self, event: Imported) -> Result | None:
        """Why ``gatewayctl import`` does not take the entry now, or None (:mod:`.imports`)."""
        sn = event.node.sn
        asked = self._checks.under_way(sn) or sn in self._republishing or sn in self._reenables
        return imports.refusal(event, self._book.get(sn), under_way=asked)

    def _imported(self, event: Imported) -> list[Action]:
        node, current = event.node, self._book.get(event.node.sn)
        refusal = self.import_refusal(event)
        if refusal is not None:
            return [refusal]
        self._book.put(node)
        self._deadlines.forget(node.sn)
        self._arm(None, node, self._wall())
        return imports.taken(event, current, self._book) + self._unfinished(node)

    def _command(self, command: commands.Command | Imported) -> list[Action]:
        """``gatewayctl republish``, ``retry``, ``forget``, ``rotate`` (:mod:`.commands`), and
        ``import`` (:mod:`.imports`)."""
        if isinstance(command, Imported):
            return self._imported(command)
        if not isinstance(command, Republish):
            self._checks.done(command.sn)  # the operator's word: a verdict later is ignored
        node = self._book.get(command.sn)
        reenabling = node is not None and self._reenabling(node)
        return commands.carry_out(
            command, node, self._fire, self._book.get, self._republishing, reenabling=reenabling
        )

    def _fire(
        self,
        sn: str,
        trigger: Trigger,
        *,
        cik: Secret | None = None,
        outcome: Outcome | None = None,
        model: str | None = None,
        response: ResponseTarget | None = None,
        detail: str = "",
        retired: Secret | None = None,
    ) -> list[Action]:
        """Apply the row of ``trigger`` for ``sn``'s state; a trigger without one is logged."""
        node = self._book.get(sn)
        state = _state(node)
        row = TRANSITIONS.get((state, trigger))
        retry = trigger is Trigger.RETRY_DUE
        if row is not None and self._draining and (Effect.REQUEST in row.effects or retry):
            trigger = stopping(trigger)
            row = TRANSITIONS[(state, trigger)]
        if row is None:
            where = "an unknown node" if node is None else f"state {state}"
            return [Log("unexpected", logging.ERROR, f"{trigger.value} for {where}", sn, state)]
        if Effect.REENABLE in row.effects:
            self._reenables.add(sn)
        step = records.Step(
            sn, trigger, self._wall(), cik, outcome, model, response, detail, retired
        )
        record = self._move(node, row, step)
        return self._effects.emit(row.effects, record, step)

    def _move(self, node: Node | None, row: Row, step: records.Step) -> Node:
        """Take ``row``'s record for ``node``; the record the effects speak of."""
        if row.target is None:
            if node is None:  # no record is made: the effects speak of a serial only
                return records.new(step.sn, step, self.settings)
            self._book.delete(node.sn)
            self._deadlines.forget(node.sn)
            return node
        record = node or records.new(step.sn, step, self.settings)
        record = records.apply(record, row, step, self.settings, self._uniform)
        self._book.put(record)
        self._arm(node, record, step.now)
        return record

    def _arm(self, before: Node | None, node: Node, wall: float) -> None:
        """The deadlines a change of record calls for; ``wall``: the time it was made."""
        self._deadlines.arm(before, node, self._clock(), wall, self.settings.backoff_cap)

    def _reenabling(self, node: Node) -> bool:
        """gatewayd itself is re-enabling this node's serial (a failure clears ``uncertain``)."""
        return node.state is State.NEEDS_REENABLE and node.uncertain and self.settings.auto_reenable

    def _check(self, sn: str, cik: Secret | None) -> bool:
        """Whether a check of ``cik`` (None: the stored CIK) as ``sn``'s may start now (and it
        is started if so): not while ``max_pending`` nodes wait for Exosite."""
        if self._busy():
            return False
        return self._checks.start(sn, cik, self._clock(), self.settings.check_interval)

    def _busy(self) -> bool:
        """As many nodes wait for Exosite, activations and checks, as ``max_pending``
        allows: new ones must wait."""
        counts = self._book.counts()
        waiting = counts[State.ACTIVATING] + counts[State.PENDING] + counts[State.RECOVERING]
        return waiting + self._checks.count() >= self.settings.max_pending

    def _hold_over(self, node: Node) -> bool:
        held = self._deadlines.held_for(node.sn, self._clock())
        if held is None:  # a record without a rejection time: since it was first seen
            held = self._wall() - node.first_seen
        return held >= self.settings.rejected_retry_after


def _state(node: Node | None) -> State | None:
    return None if node is None else node.state
