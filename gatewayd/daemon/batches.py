"""What waits for the disk: the batch being gathered and the one being flushed.

The executor writes records to the state database within one open transaction
and hands CIKs to the gathering batch. Actions that must not happen before
those writes are durable (publishing a CIK, logging it as done, recording its
node ``activated``, sending the request a write-ahead record announces) wait in
the batch, in order, and so does anything later about the same node. When the
writer is idle, :meth:`Batches.cut` commits the transaction and hands the batch
to the writer; what waited runs once its :class:`~gatewayd.daemon.writer.Flushed`
comes back. The daemon cuts when nothing else waits in its inbox: what arrives
together (and, on a slow core, what piled up meanwhile) shares one flush. Work on
other nodes (a re-announce answered from the keystore, a rejection, status) goes on
meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from gatewayd.core.actions import Action, Log, Publish, Result, SaveNode, StoreCik
from gatewayd.core.errors import StateError

if TYPE_CHECKING:
    from gatewayd.adapters.statedb import StateDB

BATCH_MOST: Final = 64
"""A batch is cut once the inbox is idle, or once it holds this many CIKs and waiting
lists of actions (under a steady stream, the inbox may never be)."""


@dataclass(frozen=True, slots=True)
class Later:
    """Actions waiting for a batch; ``done`` is called once they are carried out;
    ``wrote``: the nodes whose records, written before them, the batch makes durable."""

    actions: Sequence[Action]
    done: Callable[[], None] | None
    wrote: frozenset[str]


@dataclass(slots=True)
class Batch:
    number: int
    ciks: list[StoreCik] = field(default_factory=list)
    later: list[Later] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    """The nodes with something in the batch: their later actions wait for it."""
    durable: bool = False
    """Records that must be durable were written (a CIK always must)."""
    error: str | None = None
    """Why the batch's records were not committed, if they were not."""

    @property
    def flush(self) -> bool:
        return self.durable or bool(self.ciks)


class Batches:
    def __init__(self, state: StateDB, submit: Callable[[int, Sequence[StoreCik]], None]) -> None:
        self._state = state
        self._submit = submit
        self.gathering = Batch(1)
        self.flushing: Batch | None = None
        self._resumed: set[str] | None = None
        """While a flushed batch's actions run: the nodes of those that wait again."""
        self._front = 0

    def waiting(self, sn: str) -> bool:
        """Whether something about ``sn`` waits for the disk (ahead of what asks)."""
        if self._resumed is not None:
            return sn in self._resumed
        return sn in self.gathering.nodes or (
            self.flushing is not None and sn in self.flushing.nodes
        )

    @contextlib.contextmanager
    def resuming(self) -> Iterator[None]:
        """A flushed batch's actions run in the block. They came before everything in the
        gathering batch: they wait only for what they write themselves, and what of them
        waits again goes ahead of the gathering batch's own actions, in order."""
        self._resumed, self._front = set(), 0
        try:
            yield
        finally:
            self._resumed = None

    @property
    def full(self) -> bool:
        """The gathering batch is as large as a batch is let grow before it is cut."""
        return len(self.gathering.ciks) + len(self.gathering.later) >= BATCH_MOST

    @property
    def busy(self) -> bool:
        """Something is being flushed, or waits to be."""
        batch = self.gathering
        return self.flushing is not None or batch.flush or bool(batch.later)

    def store(self, action: StoreCik) -> None:
        self.gathering.ciks.append(action)
        self._add(action.sn)

    def wrote(self, sn: str) -> None:
        """A record that must be durable was written about ``sn``."""
        self.gathering.durable = True
        self._add(sn)

    def defer(
        self, actions: Sequence[Action], done: Callable[[], None] | None, wrote: frozenset[str]
    ) -> None:
        later = Later(actions, done, wrote)
        if self._resumed is None:
            self.gathering.later.append(later)
        else:
            self.gathering.later.insert(self._front, later)
            self._front += 1
        for sn in map(subject, actions):
            if sn is not None:
                self._add(sn)

    def after_writes(self, done: Callable[[], None]) -> None:
        """Call ``done`` once what was written so far is durable: the CIKs handed over and the
        records saved, flushed. Records that waited for a flush are written after it, and
        need the next one: ``done`` waits for both."""
        self._after(lambda: self._after(done))

    def _after(self, done: Callable[[], None]) -> None:
        if self._state.writing:
            self.gathering.durable = True
        if self.busy:
            self.defer([], done, frozenset())
        else:
            done()

    def _add(self, sn: str) -> None:
        self.gathering.nodes.add(sn)
        if self._resumed is not None:
            self._resumed.add(sn)

    def cut(self) -> tuple[Batch | None, StateError | None]:
        """Unless a flush is under way: commit the transaction, and hand the gathered batch
        to the writer if it needs a flush. Returns the batch if its waiting actions may
        run at once (it needs no flush), and a failed commit's error."""
        if self.flushing is not None:
            return None, None
        batch = self.gathering
        failure = None
        try:
            self._state.commit()
        except StateError as exc:
            failure = exc
            batch.error = str(exc)
        if not batch.flush and not batch.later:
            return None, failure
        self.gathering = Batch(batch.number + 1)
        if batch.flush:
            self.flushing = batch
            self._submit(batch.number, batch.ciks)
            return None, failure
        return batch, failure

    def flushed(self, number: int) -> Batch:
        batch = self.flushing
        if batch is None or batch.number != number:
            raise RuntimeError(f"batch {number} flushed, but it is not the one under way")
        self.flushing = None
        return batch


def subject(action: Action) -> str | None:
    """The node an action is about, if any."""
    if isinstance(action, SaveNode):
        return action.node.sn
    if isinstance(action, Publish):
        return action.answer.sn
    if isinstance(action, Result):
        return None
    if isinstance(action, Log):
        return action.sn
    return action.sn
