"""What comes in from the broker, before the engine sees it: bounded and checked.

paho's thread hands every link event to :meth:`Intake.receive`, which queues it
for the main thread, unless the main thread is so far behind that
``MAX_BACKLOG`` messages already wait: then the announce is dropped and
counted, so a flood cannot grow gatewayd's memory without limit. On the main
thread, :meth:`Intake.announce` checks the serial against ``sn_pattern``
first, then the node's announce rate, and only then parses the payload.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from gatewayd.adapters import logs
from gatewayd.config.schema import NodesConfig
from gatewayd.core import protocol
from gatewayd.core.errors import InvalidRequest
from gatewayd.core.events import BadAnnounce, Event, LinkEvent, Message
from gatewayd.core.limits import WARN_WINDOW, AnnounceLimiter

log = logging.getLogger(__name__)

MAX_BACKLOG: Final = 10_000
"""Messages waiting for the main thread beyond which new announces are dropped."""
MAX_BACKLOG_BYTES: Final = 4 * 1024 * 1024
"""The same bound, in bytes of payload."""


class Intake:
    def __init__(
        self,
        topics: protocol.Topics,
        nodes: NodesConfig,
        put: Callable[[LinkEvent], None],
        backlog: Callable[[], int],
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        """``reserved``: serials no node may have (gatewayd's own broker user name)."""
        self._topics = topics
        self._reserved = reserved
        self.nodes = nodes
        self._put = put
        self._backlog = backlog
        self.limiter = AnnounceLimiter(nodes.announce_rate, nodes.announce_burst, time.monotonic)
        self.overflowed = 0
        """Announces dropped because the main thread was behind."""
        self._overflow_said = 0
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._overflow_warned_at = -WARN_WINDOW

    @property
    def dropped(self) -> int:
        return self.limiter.dropped + self.overflowed

    # --------------------------------------------------------- paho's thread

    def receive(self, event: LinkEvent) -> None:
        if isinstance(event, Message):
            if len(event.payload) > protocol.MAX_ANNOUNCE_BYTES:
                # refused unread anyway: keep only enough to say it was too long
                cut = event.payload[: protocol.MAX_ANNOUNCE_BYTES + 1]
                event = dataclasses.replace(event, payload=cut)
            size = _size(event)
            with self._lock:
                full = self._backlog() >= MAX_BACKLOG
                full = full or self._queued_bytes + size > MAX_BACKLOG_BYTES
                if full:
                    self.overflowed += 1
                    return
                self._queued_bytes += size
        self._put(event)

    # ---------------------------------------------------------- main thread

    def announce(self, message: Message) -> Event | None:
        """The announce as an event for the engine, or None when it is dropped."""
        with self._lock:
            self._queued_bytes -= _size(message)
        self._say_overflow()
        topics = self._topics
        sn = topics.topic_sn(message.topic)
        if sn is None:
            return BadAnnounce(str(protocol.not_an_announce(message.topic)))
        # a serial outside sn_pattern too: it is answered, so it costs
        verdict = self.limiter.allow(sn)
        if not verdict.allowed:
            if verdict.warn:
                log.warning(
                    "node %s: announces faster than %g per second (bursts of %d): "
                    "%d dropped; the next warning about it comes in %.0f s at the earliest",
                    sn,
                    self.limiter.rate,
                    self.limiter.burst,
                    verdict.dropped,
                    WARN_WINDOW,
                    extra=logs.about(sn),
                )
            return None
        if sn in self._reserved:
            text = f"serial {sn!r} is this gateway's own broker user name: no node may have it"
            return BadAnnounce(text, sn)
        try:
            return protocol.parse_announce(
                topics,
                sn,
                message.payload,
                self.nodes.sn_pattern,
                message.response_topic,
                message.correlation,
            )
        except InvalidRequest as exc:
            return BadAnnounce(str(exc), exc.sn, exc.response)

    def _say_overflow(self) -> None:
        now = time.monotonic()
        if self.overflowed == self._overflow_said or now - self._overflow_warned_at < WARN_WINDOW:
            return
        log.warning(
            "%d announces dropped: they came faster than gatewayd could take them "
            "(over %d waiting)",
            self.overflowed - self._overflow_said,
            MAX_BACKLOG,
        )
        self._overflow_said, self._overflow_warned_at = self.overflowed, now


def _size(message: Message) -> int:
    """What a waiting message costs: its payload, response topic and correlation data."""
    topic = len(message.response_topic or "")
    return len(message.payload) + topic + len(message.correlation or b"")
