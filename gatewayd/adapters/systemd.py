"""sd_notify for the daemon: READY, STATUS, WATCHDOG, STOPPING, RELOADING.

The protocol is one datagram per message on the socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name after '@'). Outside systemd
the variable is unset and every call does nothing. The watchdog follows
``sd_watchdog_enabled``: ``$WATCHDOG_USEC`` sets the interval, and
``$WATCHDOG_PID``, when set, must be this process.

A notification never blocks the caller: the socket is non-blocking, and a
message that finds systemd's queue full (a busy PID 1 reads it late; the queue
holds a handful), or cannot be sent at all, is dropped, counted, and said once
a minute.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

WARN_WINDOW: Final = 60.0
"""Dropped notifications are said at most this often."""


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(environ)
        """Seconds between two WATCHDOG=1 that systemd tolerates, or None."""
        self._socket: socket.socket | None = None
        self.dropped = 0
        """Notifications dropped because systemd's queue was full."""
        self._said_at: float | None = None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        """RELOADING=1, with the monotonic time systemd's notify-reload expects."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._socket is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._socket = socket.socket(socket.AF_UNIX, kind)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            self.dropped += 1
            now = time.monotonic()
            if self._said_at is not None and now - self._said_at < WARN_WINDOW:
                return
            self._said_at = now
            busy = isinstance(exc, BlockingIOError)
            why = "systemd does not read its notify socket" if busy else exc
            log.warning(
                "cannot notify systemd (%s): %s; %d notifications dropped so far",
                message.split("=", 1)[0],
                why,
                self.dropped,
            )

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value if value.startswith("/") else None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
