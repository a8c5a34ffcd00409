"""One deadline for a whole HTTP exchange, however the server dribbles its answer.

A socket timeout bounds each read, not the request: a server (or a broken
proxy) that sends its headers a byte at a time keeps a request alive for as
long as it likes. :func:`armed` gives the calling thread a :class:`Deadline`;
the sockets attached to it are shut down when it passes, which wakes any
read or write blocked on them, whatever library is doing it. One thread,
started on first use, watches every deadline of the process.

The caller then sees an error from its HTTP library and asks
:attr:`Deadline.passed` what it means; once the block has ended, its deadline
touches nothing (a caller that keeps a connection checks ``passed`` after it).
:data:`POOLS` are urllib3's connection pools whose connections attach their
sockets to the current deadline and set :attr:`Deadline.connected`; :class:`Adapter`
is requests' adapter that makes them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

SocketOf = Callable[[], socket.socket | None]
"""Gives the socket to shut down when the deadline passes (None: there is none yet)."""


class Deadline:
    """The end of one exchange, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.passed = False
        self.connected = False
        """A connection was up: a request may have gone out on it."""
        self._sockets: list[SocketOf] = []
        self._done = False
        self._lock = threading.Lock()

    def left(self) -> float:
        """Seconds until the deadline (never below a millisecond: a timeout of 0 is
        non-blocking)."""
        return max(self.at - time.monotonic(), 0.001)

    def attach(self, socket_of: SocketOf) -> None:
        """Shut this socket down when the deadline passes (at once if it has)."""
        with self._lock:
            self._sockets.append(socket_of)
            passed = self.passed
        if passed:
            _shut(socket_of)

    def _fire(self) -> None:
        # under the lock: once the block has ended (_end), no socket of it is touched, so a
        # connection kept for the next request is never shut down by this one's deadline
        with self._lock:
            if self._done:
                return
            self.passed = True
            for socket_of in self._sockets:
                _shut(socket_of)

    def _end(self) -> None:
        with self._lock:
            self._done = True


def _shut(socket_of: SocketOf) -> None:
    sock = socket_of()
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        # the plain socket's shutdown, also for a TLS socket: it works on the descriptor
        # and leaves the TLS object to the thread reading from it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watcher:
    """The thread that fires deadlines: a heap of them, woken when an earlier one comes."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cutoff", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:  # the watcher waits for a later one: wake it
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline._fire()  # noqa: SLF001 (the watcher is the deadline's other half)


_WATCHER = _Watcher()
_current = threading.local()


@contextlib.contextmanager
def armed(seconds: float) -> Iterator[Deadline]:
    """A deadline ``seconds`` from now for the block, also :func:`current` in this thread."""
    deadline = Deadline(seconds)
    _WATCHER.add(deadline)
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = previous
        deadline._end()  # noqa: SLF001


def current() -> Deadline | None:
    """The deadline :func:`armed` gave this thread, if it is inside one."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    return deadline


def _watched(sock: socket.socket) -> socket.socket:
    """``sock``, to be shut down when the calling thread's deadline passes."""
    deadline = current()
    if deadline is not None:
        deadline.attach(lambda: sock)
    return sock


def _connected() -> None:
    deadline = current()
    if deadline is not None:
        deadline.connected = True


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())

    def connect(self) -> None:
        super().connect()  # through a proxy's tunnel and the TLS handshake, if any
        _connected()

    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (urllib3's own)
        if self.sock is not None:  # a kept connection: the request goes out on it at once
            _watched(self.sock)
            _connected()
        super().request(*args, **kwargs)


class _TLSConnection(_Connection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


POOLS: Final = {"http": _Pool, "https": _TLSPool}


class Adapter(HTTPAdapter):
    """requests' adapter with gatewayd's TLS context, whose every new socket (to the
    server, or to a proxy) is shut down when the request's deadline passes, and which
    tells the deadline once a connection is up (from then on a failure may come after
    the request reached the server)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)  # never sent twice: an activation is not idempotent

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (requests' own)
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:  # noqa: ANN401 (requests' own)
        if not proxy.lower().startswith("socks"):  # SOCKS proxies have pools of their own
            kwargs["ssl_context"] = self._context
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = POOLS
        return manager
