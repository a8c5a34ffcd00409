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

:class:`Adapter` is requests' adapter whose connections attach their sockets to
the current deadline. It rests on documented extension points only, the same
code for urllib3 1.26 and 2.x: requests' ``init_poolmanager`` and
``proxy_manager_for`` (its hooks for subclassing ``HTTPAdapter``) give each
pool manager pool classes (through the manager's ``pool_classes_by_scheme``,
as urllib3's own SOCKS manager sets it) whose ``ConnectionCls``, urllib3's
documented class attribute, is the pool's own connection class with two public
methods extended:

- ``connect()`` first bounds the connection's ``timeout`` by the time left:
  urllib3 gives it to the TCP connect, so that a connect never answered ends at
  the deadline, and Python's ssl module takes it as the limit of the whole TLS
  handshake. It attaches the connection itself: when the deadline passes,
  whatever socket the connection holds in ``sock`` then is shut down. urllib3
  puts the socket there as soon as TCP is connected, before a proxy's tunnel
  and the TLS handshake, so that a proxy dribbling its answer to CONNECT is cut
  at the deadline too. Once ``connect()`` returns, the connection is up
  (:attr:`Deadline.connected`), and its socket is attached as well: the
  connection lets go of it when the answer ends the connection, the response
  reads on.
- ``request()`` on a connection kept from an earlier request attaches its socket
  and sets :attr:`Deadline.connected`, for the request goes out on it at once.

A socket that comes after the deadline passed (a connect that ended just then)
is shut down within ``LOOK_AGAIN``: a passed deadline is looked at again until
its block ends. urllib3's private ``_new_conn`` would hand over the socket just
before ``sock`` is set, and no sooner. What no deadline ends: the name lookup
(the resolver's own timeouts), and the connect to each further address of a
name with several, each bounded by the time left when the connection started.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

LOOK_AGAIN: Final = 0.02
"""Seconds between two looks at a passed deadline's sockets, until its block ends."""

SocketOf = Callable[[], object]
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
            if self.passed:
                _shut(socket_of())

    def _fire(self) -> bool:
        """Shut the sockets down; True while the block goes on (to be looked at again)."""
        # under the lock: once the block has ended (_end), no socket of it is touched, so a
        # connection kept for the next request is never shut down by this one's deadline
        with self._lock:
            if self._done:
                return False
            self.passed = True
            for socket_of in self._sockets:
                _shut(socket_of())
            return True

    def _end(self) -> None:
        with self._lock:
            self._done = True


def _shut(held: object) -> None:
    """Shut the socket ``held`` down for reading and writing (None: there is none yet)."""
    # TLS inside the TLS of an HTTPS proxy's tunnel is urllib3's SSLTransport, whose
    # ``socket`` is the TLS socket to the proxy
    sock = held if isinstance(held, socket.socket) else getattr(held, "socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError, ValueError):
            # the plain socket's shutdown, also for a TLS socket: it works on the
            # descriptor and leaves the TLS object to the thread reading from it
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watcher:
    """The thread that fires deadlines: a heap of them, woken when an earlier one comes."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline, at: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._order), deadline))
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
            if deadline._fire():  # noqa: SLF001 (the watcher is the deadline's other half)
                self.add(deadline, time.monotonic() + LOOK_AGAIN)


_WATCHER = _Watcher()
_current = threading.local()


@contextlib.contextmanager
def armed(seconds: float) -> Iterator[Deadline]:
    """A deadline ``seconds`` from now for the block, also :func:`current` in this thread."""
    deadline = Deadline(seconds)
    _WATCHER.add(deadline, deadline.at)
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


class _Watched(HTTPConnection):
    """Put before a urllib3 connection class: its sockets are the current deadline's."""

    _cutoff: Deadline | None = None
    """The deadline this connection is attached to."""

    def connect(self) -> None:
        deadline = current()
        if deadline is None:
            super().connect()
            return
        self.timeout = deadline.left()
        self._cutoff = deadline
        deadline.attach(lambda: self.sock)  # there once TCP is connected
        super().connect()  # the TCP connect, a proxy's tunnel and the TLS handshake, if any
        sock = self.sock
        deadline.attach(lambda: sock)  # also once the response holds it alone
        deadline.connected = True

    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (urllib3's own)
        deadline = current()
        sock = self.sock
        if deadline is not None and sock is not None and self._cutoff is not deadline:
            # a connection kept from an earlier request: this one goes out on it at once
            self._cutoff = deadline
            deadline.attach(lambda: sock)
            deadline.connected = True
        super().request(*args, **kwargs)


@functools.cache
def _watched(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """``pool``'s subclass whose connections are :class:`_Watched` (``pool`` if they are)."""
    if issubclass(pool.ConnectionCls, _Watched):
        return pool
    connection = type(f"Watched{pool.ConnectionCls.__name__}", (_Watched, pool.ConnectionCls), {})
    return cast(
        "type[HTTPConnectionPool]",
        type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection}),
    )


def _watch(manager: PoolManager) -> PoolManager:
    """``manager``, its pools' connections attached to the current deadline."""
    manager.pool_classes_by_scheme = {
        scheme: _watched(pool) for scheme, pool in manager.pool_classes_by_scheme.items()
    }
    return manager


class Adapter(HTTPAdapter):
    """requests' adapter with gatewayd's TLS context, whose every connection (to the
    server, or to a proxy) has its socket shut down when the request's deadline passes,
    and which tells the deadline once a connection is up (from then on a failure may
    come after the request reached the server)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)  # never sent twice: an activation is not idempotent

    def manager_for(self, proxy: str | None) -> PoolManager:
        """The pool manager of requests made directly (``proxy`` None) or through ``proxy``."""
        if proxy is None:
            manager: PoolManager = self.poolmanager
            return manager
        return cast("PoolManager", self.proxy_manager_for(proxy))

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (requests' own)
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        _watch(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:  # noqa: ANN401 (requests' own)
        kwargs["ssl_context"] = self._context  # used once, when requests makes the manager
        return _watch(super().proxy_manager_for(proxy, **kwargs))
