"""What gatewayd says about itself: the retained status topic, systemd's STATUS, the watchdog.

The status topic carries counts by state, uptime and version, republished when
they change and at most every ``STATUS_INTERVAL`` seconds. systemd's STATUS
line ("broker connected; 12 activated, 2 pending, 1 rejected") follows the
same counts. Publishes the broker has stopped acknowledging show in all three
("publishes": "stalled"; "broker connected, publishes unacknowledged").
WATCHDOG=1 is sent from the main loop, so a stuck loop lets systemd's watchdog
fire.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from gatewayd import __version__
from gatewayd.adapters.systemd import Notifier
from gatewayd.core.acks import AckState
from gatewayd.core.engine import Engine
from gatewayd.core.events import Connected, Disconnected
from gatewayd.core.model import State
from gatewayd.core.transitions import WAITING

STATUS_INTERVAL: Final = 2.0
"""The status topic is republished at most this often."""
NOTIFY_INTERVAL: Final = 1.0
"""systemd's STATUS line is updated at most this often: a summary, not one per event."""


def offline() -> bytes:
    """The retained status of a gateway that is not running (also its MQTT will)."""
    return json.dumps({"state": "offline", "version": __version__}, separators=(",", ":")).encode()


log = logging.getLogger(__name__)


class Publishes(Protocol):
    """The broker link's publishes: whether the broker acknowledges them (and what to do
    when it stops), checked by :meth:`Reporter.report` when :meth:`due`."""

    def due(self) -> float | None: ...
    def acks(self) -> AckState: ...
    def watch(self) -> None: ...


class Reporter:
    def __init__(
        self, engine: Engine, publish: Callable[[bytes], None], notifier: Notifier
    ) -> None:
        """``publish`` puts a payload on the retained status topic."""
        self._engine = engine
        self._publish = publish
        self.notifier = notifier
        self._started = time.monotonic()
        self.connected = False
        self._sent: tuple[object, ...] | None = None
        self._sent_at = 0.0
        self._said = ""
        self._said_at = -NOTIFY_INTERVAL
        self._watchdog_at = 0.0
        self.publishes: Publishes | None = None
        """The broker link's, once there is one."""

    def acks(self) -> AckState:
        """How many publishes wait for the broker, and whether they have stalled."""
        return AckState(0, None) if self.publishes is None else self.publishes.acks()

    def online(self) -> bytes:
        body: dict[str, object] = {"state": "online", "version": __version__}
        body["uptime"] = int(time.monotonic() - self._started)
        body["nodes"] = {str(k): v for k, v in self._engine.counts().items()}
        body["publishes"] = "ok" if self.acks().stalled_for is None else "stalled"
        return json.dumps(body, separators=(",", ":")).encode()

    def summary(self) -> dict[str, object]:
        """What ``gatewayctl status`` shows: the broker, counts, last activation, oldest wait."""
        nodes = self._engine.nodes()
        last = max(
            (n for n in nodes if n.activated_at is not None),
            key=lambda n: n.activated_at or 0.0,
            default=None,
        )
        oldest = min(
            (n for n in nodes if n.state in WAITING), key=lambda n: n.first_seen, default=None
        )
        acks = self.acks()
        stalled_for = None if acks.stalled_for is None else int(acks.stalled_for)
        return {
            "version": __version__,
            "uptime": int(time.monotonic() - self._started),
            "broker": "connected" if self.connected else "disconnected",
            "publishes": {"waiting": acks.waiting, "stalled_for": stalled_for},
            "nodes": {str(k): v for k, v in self._engine.counts().items()},
            "last_activation": None if last is None else [last.sn, last.activated_at],
            "oldest_pending": None if oldest is None else [oldest.sn, oldest.first_seen],
        }

    def text(self) -> str:
        counts = self._engine.counts()
        broker = "broker connected" if self.connected else "broker disconnected"
        if self.acks().stalled_for is not None:
            broker += ", publishes unacknowledged"
        shown = [State.ACTIVATED, State.PENDING, State.REJECTED, State.NEEDS_REENABLE]
        parts = [f"{counts[s]} {s}" for s in shown if counts[s] or s is not State.NEEDS_REENABLE]
        return f"{broker}; {', '.join(parts)}"

    def link(self, event: Connected | Disconnected, broker: str, subscribed_to: str) -> None:
        """The broker link came up or went down: said in the log, and in the status."""
        if isinstance(event, Disconnected):
            if self.connected:
                log.warning("disconnected from the broker (%s); reconnecting", event.reason)
            self.connection(connected=False)
            return
        self.connection(connected=True)
        if event.subscribed:
            log.info("connected to broker %s, subscribed to %s", broker, subscribed_to)

    def connection(self, connected: bool) -> None:
        self.connected = connected
        self._sent = None  # a new session gets the status at once

    def due(self) -> float | None:
        """When the status topic or the watchdog next needs this."""
        due = []
        if self.connected and self._key() != self._sent:
            due.append(self._sent_at + STATUS_INTERVAL)
        if self.notifier.watchdog_interval is not None:
            due.append(self._watchdog_at)
        if self.text() != self._said:
            due.append(self._said_at + NOTIFY_INTERVAL)
        if self.publishes is not None and (when := self.publishes.due()) is not None:
            due.append(when)
        return min(due, default=None)

    def report(self) -> None:
        """Called after every event: keeps the topic, STATUS and the watchdog current, and
        has the broker link look at its publishes."""
        if self.publishes is not None:
            self.publishes.watch()
        now = time.monotonic()
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + interval / 2
        if now >= self._said_at + NOTIFY_INTERVAL:  # (the counts are read only then)
            text = self.text()
            if text != self._said:
                self.notifier.status(text)
                self._said, self._said_at = text, now
        if not self.connected or (self._sent is not None and now < self._sent_at + STATUS_INTERVAL):
            return
        key = self._key()
        if key != self._sent:
            self._sent, self._sent_at = key, now
            self._publish(self.online())

    def _key(self) -> tuple[object, ...]:
        return (*self._engine.counts().values(), self.acks().stalled_for is None)
