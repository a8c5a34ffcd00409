"""The engine's book of nodes: every record by serial, how many are in each state, what is
under way about each (its :class:`~gatewayd.core.transitions.Work`), the response
topics waiting for a node's next answer, and the activated nodes whose CIK could not
be read. Pure; the engine owns one.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action
from gatewayd.core.model import Node, ResponseTarget, State
from gatewayd.core.transitions import IDLE, Work

MAX_WAITING_RESPONSES: Final = 8
"""Response topics remembered per node until it can be answered."""

MAX_REMEMBERED: Final = 10_000
"""Checks remembered for their ``check_interval`` at most (each a serial and a CIK); the
oldest are forgotten first."""

UNREADABLE_LOG_WINDOW: Final = 60.0
"""An activated node whose CIK cannot be read is logged about at most this often."""


class Book:
    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._counts = dict.fromkeys(State, 0)
        self._waiting: dict[str, list[ResponseTarget]] = {}
        self._unreadable: dict[str, float] = {}
        """Activated nodes whose CIK could not be read: when that was last logged."""
        self._work: OrderedDict[str, Work] = OrderedDict()
        """The work of each node with something under way or checked lately, the least
        lately changed first (a serial with no record may have some: a check of the CIK
        it offers)."""
        self._checking = 0
        self._remembered = 0

    def get(self, sn: str) -> Node | None:
        return self._nodes.get(sn)

    def nodes(self) -> Iterable[Node]:
        return self._nodes.values()

    def counts(self) -> dict[State, int]:
        return dict(self._counts)

    def count(self, states: Iterable[State | None]) -> int:
        """How many nodes are in one of ``states``."""
        return sum(self._counts[state] for state in states if state is not None)

    def put(self, node: Node) -> None:
        old = self._nodes.get(node.sn)
        if old is not None:
            self._counts[old.state] -= 1
        self._counts[node.state] += 1
        self._nodes[node.sn] = node

    def delete(self, sn: str) -> None:
        node = self._nodes.pop(sn)
        self._counts[node.state] -= 1
        self._waiting.pop(sn, None)
        self._unreadable.pop(sn, None)

    def work(self, sn: str) -> Work:
        return self._work.get(sn, IDLE)

    def set_work(self, sn: str, work: Work, now: float, interval: float) -> None:
        """Take ``sn``'s work; what is remembered of checks older than ``interval`` (at
        ``now``, monotonic), or beyond MAX_REMEMBERED, is forgotten."""
        old = self._work.get(sn, IDLE)
        if work == old:
            return
        self._checking += (work.check is not None) - (old.check is not None)
        self._remembered += len(work.checked) - len(old.checked)
        if work == IDLE:
            self._work.pop(sn, None)
        else:
            self._work[sn] = work
            self._work.move_to_end(sn)
        self._prune(now, interval)

    def _prune(self, now: float, interval: float) -> None:
        """Forget the checks older than ``interval``, from the least lately changed work on,
        and, beyond MAX_REMEMBERED, that work's oldest check, one at a time."""
        for _ in range(len(self._work)):
            sn, work = next(iter(self._work.items()))
            over = self._remembered > MAX_REMEMBERED
            if over:
                kept = work.checked[1:]  # oldest first: the newest checks stay
            else:
                kept = tuple(c for c in work.checked if now - c[1] < interval)
            if len(kept) == len(work.checked):
                if not over:
                    return
                self._work.move_to_end(sn)  # under way, with no check remembered
                continue
            self._remembered -= len(work.checked) - len(kept)
            work = dataclasses.replace(work, checked=kept)
            if work == IDLE:
                del self._work[sn]
            else:
                self._work[sn] = work  # where it was: the next look starts with it again

    def checking(self) -> int:
        """Checks under way."""
        return self._checking

    def remembered(self) -> int:
        """Checks remembered for their ``check_interval``."""
        return self._remembered

    def wait(self, sn: str, response: ResponseTarget) -> None:
        """Remember where the node asked its next answer to go too."""
        waiting = self._waiting.setdefault(sn, [])
        if response not in waiting:
            waiting.append(response)
            del waiting[:-MAX_WAITING_RESPONSES]

    def responses(self, sn: str) -> tuple[ResponseTarget, ...]:
        """The response topics waiting for ``sn``'s answer, each answered once."""
        return tuple(self._waiting.pop(sn, ()))

    def unreadable(self) -> list[str]:
        return sorted(self._unreadable)

    def readable(self, sn: str) -> None:
        self._unreadable.pop(sn, None)

    def unreadable_log(self, node: Node, error: str, now: float) -> list[Action]:
        """An activated node whose CIK cannot be read: an error, once a minute at most."""
        said = self._unreadable.get(node.sn)
        if said is not None and now - said < UNREADABLE_LOG_WINDOW:
            return []
        self._unreadable[node.sn] = now
        return [replies.unreadable_log(node, error)]
