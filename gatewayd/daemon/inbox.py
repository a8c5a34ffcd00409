"""What the daemon's main thread takes its work from: Exosite's answers (and the
writer's flushes) first, then
everything else in the order it came, and a :class:`~gatewayd.core.events.Tick`
whenever something is due.

paho's network thread, the Exosite workers, the control server and the signal
handlers only put items here. There are two queues, both ``queue.SimpleQueue``:
the answers, and everything else. An answer goes first, so that a CIK that has
arrived never waits behind a storm of announces; SimpleQueue has no
priorities, and it is the one queue of the standard library whose ``put`` may
be called from a signal handler (a PriorityQueue's lock, held by the main
thread when the signal comes, would deadlock it). An answer put on its queue
wakes the main thread with a marker on the other.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gatewayd.core.events import (
    ActivationAnswered,
    CikChecked,
    Event,
    LinkEvent,
    Message,
    ReenableAnswered,
    Tick,
)
from gatewayd.daemon.control import Request
from gatewayd.daemon.writer import Flushed

MAX_WAIT: Final = 5.0
"""The longest the main thread waits for an item when nothing is due. Linux delivers
a signal to the main thread, which blocks none, and that wakes it; this is the
bound should another thread ever take one (its handler then runs on the next
wake). Every timer's deadline wakes it on time."""


@dataclass(frozen=True, slots=True)
class Stop:
    """A signal came (SIGTERM, SIGINT, SIGHUP)."""

    signal: int


@dataclass(frozen=True, slots=True)
class _Wake:
    """An answer waits in the answers queue."""


Answered = ActivationAnswered | ReenableAnswered | CikChecked | Flushed
Item = Event | LinkEvent | Stop | Request | Flushed


class Inbox:
    def __init__(self) -> None:
        self._items: queue.SimpleQueue[Item | _Wake] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[Answered] = queue.SimpleQueue()
        self._held: Item | None = None
        """An item taken while gathering announces, given next."""

    def put(self, item: Item) -> None:
        """From any thread, or a signal handler."""
        self._items.put(item)

    def answer(self, answer: Answered) -> None:
        """From an Exosite worker, a re-enable thread or the writer: it is taken before
        anything else."""
        self._answers.put(answer)
        self._items.put(_Wake())

    def waiting(self) -> int:
        """How many items wait (answers apart), roughly."""
        return self._items.qsize()

    def idle(self) -> bool:
        """Nothing waits to be taken: the main thread would wait for the next item."""
        return self._items.empty() and self._answers.empty() and self._held is None

    def take(self, due: Callable[[], float | None]) -> Item:
        """The next item: an answer first; a Tick once ``due()`` (monotonic) has come, even
        while items keep coming."""
        while True:
            try:
                return self._answers.get_nowait()
            except queue.Empty:
                pass
            if self._held is not None:
                held, self._held = self._held, None
                return held
            deadline = due()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                return Tick()
            wait = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - now)
            try:
                item = self._items.get(timeout=wait)
            except queue.Empty:
                return Tick()
            if not isinstance(item, _Wake):
                return item

    def announces(self, first: Message, most: int) -> list[Message]:
        """``first`` and the announces waiting right behind it, ``most`` in all; anything
        else ends the batch and is taken next (an answer before all)."""
        batch = [first]
        while len(batch) < most and self._held is None:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Message):
                batch.append(item)
            elif isinstance(item, _Wake):
                break  # an answer waits: it goes next
            else:
                self._held = item
        return batch
