"""The node state machine's engine: events in, actions out, no I/O.

What happens to a node is decided in :mod:`gatewayd.core.transitions`: a rule there
turns each event into a trigger from the node's facts, and the table gives the row
for the node's state and that trigger. The engine only gathers the facts, applies
the row (the record's changes with :mod:`gatewayd.core.records`, the effects with
:mod:`gatewayd.core.effects`) and keeps the book.

The engine never sleeps, reads a clock of its own or touches a socket, a file
or a thread. Time comes from two injected clocks: ``clock``, monotonic, for
every interval (:mod:`gatewayd.core.deadlines`), and ``wall`` for the times a
record keeps; randomness (the jitter of retries) from the injected ``uniform``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gatewayd.core import commands, records, replies, transitions
from gatewayd.core.actions import Action, Log, Result
from gatewayd.core.book import Book
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
    RetiredKept,
    Retry,
    Rotate,
    Tick,
    Verdict,
)
from gatewayd.core.model import Node, ResponseTarget, Settings, State
from gatewayd.core.secret import Secret
from gatewayd.core.transitions import ANY, TAKEN, WAITING, Facts, Importing, Trigger


class Engine:
    """Owns every node's record and work; one thread calls :meth:`handle`."""

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
        self._stopping = False
        for node in nodes:
            self._book.put(node)
            self._arm(None, node, self._wall())

    def start(self) -> list[Action]:
        """What the last stop left unfinished: keyring reads for the nodes whose request was
        in flight, and the re-enables and rotations gatewayd had started."""
        actions: list[Action] = []
        for node in list(self._book.nodes()):
            actions += self._unfinished(node)
        return actions

    def _unfinished(self, node: Node) -> list[Action]:
        trigger = transitions.unfinished(node, self.settings)
        return [] if trigger is None else self._fire(node.sn, trigger)

    def node(self, sn: str) -> Node | None:
        return self._book.get(sn)

    def nodes(self) -> Iterable[Node]:
        return self._book.nodes()

    def counts(self) -> dict[State, int]:
        return self._book.counts()

    def checks(self) -> tuple[int, int]:
        """Checks under way, and checks remembered for their ``check_interval``."""
        return self._book.checking(), self._book.remembered()

    def unreadable(self) -> list[str]:
        """Activated nodes whose stored CIK could not be read when last asked for."""
        return self._book.unreadable()

    def next_deadline(self) -> float | None:
        """When :class:`Tick` next has something to do, or None."""
        return self._deadlines.next()

    def handle(self, event: Event) -> list[Action]:  # noqa: C901 (one case per kind of event)
        match event:
            case Announced():
                return self._announced(event)
            case BadAnnounce():
                return invalid(event.sn, event.message, event.response)
            case ActivationAnswered():
                return self._answered(event)
            case RequestUnsent() | ReenableAnswered():
                return self._reenable_answered(event)
            case CikLookedUp():
                return self._looked_up(event)
            case CikChecked():
                return self._checked(event)
            case Tick():
                return self._tick()
            case Drain():
                self._stopping = True
                return []
            case Republish() | Retry() | Forget() | Rotate():
                return self._command(event)
            case Imported():
                importing = Importing(event)
                return self._fire(event.node.sn, Trigger.IMPORT, importing=importing)
            case RetiredKept():
                return self._retired_kept(event)

    def _facts(self, sn: str) -> Facts:
        node = self._book.get(sn)
        now = self._clock()
        return Facts(
            node,
            self._book.work(sn),
            self.settings,
            now,
            busy=self._busy(),
            held_over=node is not None and self._held_over(node, now),
            stopping=self._stopping,
        )

    def _announced(self, event: Announced) -> list[Action]:
        sn, facts = event.sn, self._facts(event.sn)
        trigger = transitions.announced(event, facts)
        if trigger is Trigger.ANNOUNCE_MODEL:
            text = f"model {event.model!r} is not one of the allowed models"
            return self._fire(sn, trigger, response=event.response, detail=text)
        if event.response is not None:
            self._book.wait(sn, event.response)
        said = Log("announce", logging.DEBUG, "announce received", sn, facts.state)
        checks = trigger in {Trigger.ANNOUNCE_ADOPT, Trigger.ANNOUNCE_CHECK}
        offered = event.cik if checks and self.settings.adopt else None
        return [said, *self._fire(sn, trigger, model=event.model, cik=offered, announce=event)]

    def _answered(self, event: ActivationAnswered) -> list[Action]:
        """Exosite's answer to a request; a 2xx with none of it in flight is kept too."""
        outcome = event.outcome
        cik = outcome.cik if isinstance(outcome, Issued) else None
        trigger = transitions.answered(event, self._facts(event.sn))
        return self._fire(event.sn, trigger, cik=cik, outcome=outcome)

    def _reenable_answered(self, event: RequestUnsent | ReenableAnswered) -> list[Action]:
        trigger = transitions.reenable_answered(event, self._facts(event.sn))
        self._settle(event.sn, event)
        if isinstance(event, RequestUnsent):
            outcome: Failed | None = Failed(f"not sent: {event.error}")
        else:
            outcome = None if event.error is None else Failed(event.error)
        return self._fire(event.sn, trigger, outcome=outcome)

    def _looked_up(self, event: CikLookedUp) -> list[Action]:
        sn, error = event.sn, event.error
        facts = self._facts(sn)
        found = transitions.looked_up(event, facts)
        self._settle(sn, event)
        outcome = None if error is None else Failed(error)
        actions = self._fire(
            sn,
            found.trigger,
            cik=found.cik,
            outcome=outcome,
            detail=found.detail,
            importing=facts.work.importing,
        )
        node = facts.node
        if error is None:
            self._book.readable(sn)
        elif node is not None and node.state is State.ACTIVATED:
            actions += self._book.unreadable_log(node, error, facts.now)
        if facts.work.republish:
            actions.append(commands.republished(sn, event.cik, error))
        return actions

    def _checked(self, event: CikChecked) -> list[Action]:
        """Exosite's verdict on a CIK (:func:`gatewayd.core.transitions.verdict`)."""
        sn, facts = event.sn, self._facts(event.sn)
        after = transitions.verdict(event, facts)
        self._settle(sn, event)
        if after is None:
            text = "a verdict on a CIK no check waits for any more: ignored"
            return [Log("cik_checked", logging.DEBUG, text, sn, facts.state)]
        if isinstance(after, Announced):  # an offered CIK not adopted: as if never offered
            unknown = event.verdict is Verdict.UNKNOWN
            said = replies.not_adopted_log(sn, facts.state, event.detail, unknown=unknown)
            return [said, *self._announced(after)]
        unknown = after.trigger is Trigger.CHECK_UNKNOWN  # a backoff row says why
        failed = Failed(f"no verdict on the CIK: {after.detail}") if unknown else None
        return self._fire(
            sn,
            after.trigger,
            cik=after.cik,
            detail=after.detail,
            model=after.model,
            outcome=failed,
            retired=after.retired,
        )

    def _tick(self) -> list[Action]:
        actions: list[Action] = []
        for sn, retry in self._deadlines.due(self._clock()):
            actions += self._fire(sn, Trigger.RETRY_DUE if retry else Trigger.EXPIRY_DUE)
        return actions

    def _command(self, command: commands.Command) -> list[Action]:
        """``gatewayctl republish``, ``retry``, ``forget``, ``rotate``: the row of the
        command's trigger, or a refusal that says why."""
        sn, trigger = command.sn, commands.TRIGGERS[type(command)]
        self._settle(sn, command)
        node = self._book.get(sn)
        refusal = transitions.refusal(node, trigger, self.settings)
        if node is None or refusal is not None:
            return [Result(ok=False, message=f"{sn}: {refusal}")]
        actions: list[Action] = [*commands.said(trigger, node), *self._fire(sn, trigger)]
        return actions + commands.answer(trigger, node, self._book.get(sn))

    def _retired_kept(self, event: RetiredKept) -> list[Action]:
        """A bundle's entry, its retired CIKs kept: taken (and what its record left
        unfinished then finished, as at a start, unless gatewayd stops), or answered."""
        sn, facts = event.sn, self._facts(event.sn)
        after = transitions.retired_kept(event, facts)
        if after is None:
            return [Log("unexpected", logging.ERROR, "retired CIKs kept for no entry", sn)]
        importing = facts.work.importing
        actions = self._fire(sn, after.trigger, detail=after.detail, importing=importing)
        node = self._book.get(sn)
        if after.trigger is Trigger.IMPORT_TAKEN and node is not None:
            then = transitions.taken_then(node, facts)
            actions += [] if then is None else self._fire(sn, then)
        return actions

    def _settle(self, sn: str, event: Event) -> None:
        """What ``event`` ends of ``sn``'s work, whatever its row (:func:`transitions.settle`)."""
        work = self._book.work(sn)
        settled = transitions.settle(work, event)
        if settled is not work:
            self._book.set_work(sn, settled, self._clock(), self.settings.check_interval)

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
        announce: Announced | None = None,
        importing: Importing | None = None,
    ) -> list[Action]:
        """Apply the row of ``trigger`` for ``sn``'s state; a trigger without one is logged."""
        node = self._book.get(sn)
        state = None if node is None else node.state
        trigger, row = transitions.row_for(state, trigger, stopping=self._stopping)
        if row is None:
            where = "an unknown node" if node is None else f"state {state}"
            return [Log("unexpected", logging.ERROR, f"{trigger.value} for {where}", sn, state)]
        now = self._clock()
        step = records.Step(
            sn,
            trigger,
            self._wall(),
            cik,
            outcome,
            model,
            response,
            detail,
            retired,
            announce,
            now,
            importing,
            state,
        )
        record = self._move(node, row, step)
        work = self._book.work(sn)
        after = records.work_after(work, row, step)
        if after is not work:
            self._book.set_work(sn, after, now, self.settings.check_interval)
        return self._effects.emit(row.effects, record, step)

    def _move(self, node: Node | None, row: transitions.Row, step: records.Step) -> Node:
        """Take ``row``'s record for ``node``; the record the effects speak of."""
        if row.target is None or (row.target is ANY and node is None):
            if node is None:  # no record is made: the effects speak of a serial only
                return records.new(step.sn, step, self.settings)
            self._book.delete(node.sn)
            self._deadlines.forget(node.sn)
            return node
        if row.target is TAKEN:  # a bundle's record, taken as it stands: armed afresh
            record = records.apply(
                node or records.new(step.sn, step, self.settings),
                row,
                step,
                self.settings,
                self._uniform,
            )
            self._book.put(record)
            self._deadlines.forget(record.sn)
            self._arm(None, record, step.now)
            return record
        record = node or records.new(step.sn, step, self.settings)
        record = records.apply(record, row, step, self.settings, self._uniform)
        self._book.put(record)
        self._arm(node, record, step.now)
        return record

    def _arm(self, before: Node | None, node: Node, wall: float) -> None:
        """The deadlines a change of record calls for; ``wall``: the time it was made."""
        self._deadlines.arm(before, node, self._clock(), wall, self.settings.backoff_cap)

    def _busy(self) -> bool:
        """As many nodes wait for Exosite, activations and checks, as ``max_pending``
        allows: new ones must wait."""
        waiting = self._book.count(WAITING) + self._book.checking()
        return waiting >= self.settings.max_pending

    def _held_over(self, node: Node, now: float) -> bool:
        held = self._deadlines.held_for(node.sn, now)
        if held is None:  # a record without a rejection time: since it was first seen
            held = self._wall() - node.first_seen
        return held >= self.settings.rejected_retry_after
