"""The simulator's HTTP plumbing: a threaded server whose handler reads a request, has the
simulator answer it, waits out the answer's delay and writes it (or, for
:data:`~gatewayd.sim.registry.DROP`, closes the connection without a word; cut
short, or dribbled a byte at a time, as the answer says).

The delay counts from the moment the request line arrived, so a latency of
50 ms answers 50 ms after the request, however long the simulator took to read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Self
from urllib.parse import urlsplit

from gatewayd.sim.model import DROP

log = logging.getLogger(__name__)

TEXT: Final = "text/plain; charset=utf-8"
DRIBBLE_PACE: Final = 0.1
"""Seconds between two bytes of a dribbled answer."""
JSON: Final = "application/json"
FORM: Final = "application/x-www-form-urlencoded"
MAX_BODY: Final = 64 * 1024
HANDLER_TIMEOUT: Final = 10.0
POLL_INTERVAL: Final = 0.05


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Message
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    """The target's query, as sent (still percent-encoded)."""


@dataclass(frozen=True, slots=True)
class Response:
    """An answer to write; ``status`` :data:`DROP` closes the connection instead."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    delay: float = 0.0
    """Seconds from the request's arrival to the answer."""
    cut: int | None = None
    """Send only this many bytes of the body (its full length announced), then hang up."""
    dribble: bool = False
    """Send the status line and headers a byte at a time, and never end them."""

    @classmethod
    def text(cls, status: int, text: str | None = None) -> Self:
        text = responses.get(status, "") if text is None else text
        return cls(status, f"{text}\n".encode())

    @classmethod
    def json(cls, status: int, document: object) -> Self:
        return cls(status, json.dumps(document).encode(), JSON)


Endpoint = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern`` must match the whole path; its named groups become ``Request.params``."""

    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Callable[[str, str, Message, bytes, str], Response],
    ) -> None:
        self.dispatch = dispatch
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def opened(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)

    def closed(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def hang_up(self) -> None:
        """Wake every handler waiting for a client's next request on a kept-alive connection."""
        with self._open_lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, _request: object, client_address: object) -> None:
        log.exception(  # noqa: LOG004 (socketserver calls this from its except clause)
            "unexpected error answering %s", client_address
        )


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"  # connections are kept alive, as Exosite's are
    disable_nagle_algorithm = True
    timeout = HANDLER_TIMEOUT
    error_content_type = TEXT
    error_message_format = "%(code)d %(message)s\n"

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def parse_request(self) -> bool:
        self._arrived = time.monotonic()  # the request line has just been read
        return super().parse_request()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(413 if length > MAX_BODY else 400, "bad Content-Length")
            return
        body = self.rfile.read(length)
        target = urlsplit(self.path)
        response = self.server.dispatch(self.command, target.path, self.headers, body, target.query)
        delay = response.delay - (time.monotonic() - self._arrived)
        if delay > 0 and self.server.stopping.wait(delay):
            self.close_connection = True
            return
        if response.status == DROP:
            self.close_connection = True
            return
        if self.server.stopping.is_set() or response.cut is not None or response.dribble:
            self.close_connection = True
        try:
            if response.dribble:
                self._dribble(f"HTTP/1.1 {response.status} OK\r\nX-Dribble: ".encode())
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body[: response.cut])
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s went away before its answer", self.address_string())

    def _dribble(self, start: bytes) -> None:
        """``start`` a byte at a time, then more of the header for ever, until the client
        goes away or the simulator stops."""
        for byte in start:
            self.wfile.write(bytes([byte]))
            if self.server.stopping.wait(DRIBBLE_PACE):
                return
        while not self.server.stopping.wait(DRIBBLE_PACE):
            self.wfile.write(b"0")
