"""The engine's book of nodes: every record by serial, how many are in each state, the
response topics waiting for a node's next answer, and the activated nodes whose CIK
could not be read. Pure; the engine owns one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gatewayd.core import replies
from gatewayd.core.actions import Action
from gatewayd.core.model import Node, ResponseTarget, State

MAX_WAITING_RESPONSES: Final = 8
"""Response topics remembered per node until it can be answered."""

UNREADABLE_LOG_WINDOW: Final = 60.0
"""An activated node whose CIK cannot be read is logged about at most this often."""


class Book:
    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._counts = dict.fromkeys(State, 0)
        self._waiting: dict[str, list[ResponseTarget]] = {}
        self._unreadable: dict[str, float] = {}
        """Activated nodes whose CIK could not be read: when that was last logged."""

    def get(self, sn: str) -> Node | None:
        return self._nodes.get(sn)

    def nodes(self) -> Iterable[Node]:
        return self._nodes.values()

    def counts(self) -> dict[State, int]:
        return dict(self._counts)

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
