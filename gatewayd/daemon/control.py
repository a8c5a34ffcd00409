"""The control channel: gatewayctl talks to the running daemon over a Unix socket.

One request per connection: a JSON object on one line, ``{"command": "retry",
"sn": "ABC123", "timeout": 30}``, answered by one JSON line, ``{"ok": true,
"message": ...}``. A command the daemon has not taken up within the caller's
``timeout`` is answered "not done" and is then never carried out.
The socket file is the daemon's own, mode 0600, in its runtime directory;
besides, the daemon asks the kernel who is calling (``SO_PEERCRED``) and
answers only root and the user it runs as. The caller needs no secret of the
daemon's: the keyring, its key and the vendor token stay in the daemon. Only
``import`` carries CIKs, the other way: ``{"command": "import", "entries": [...],
"prefer_bundle": false}``, a bundle's records and CIKs (:mod:`gatewayd.core.entries`),
answered with how many were imported and what was not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gatewayd.core.errors import GatewaydError

log = logging.getLogger(__name__)

COMMANDS: Final = frozenset(
    {"status", "reload", "republish", "retry", "forget", "rotate", "import"}
)
"""What the daemon answers."""
UNNAMED: Final = frozenset({"status", "reload", "import"})
"""The commands that name no node."""
MAX_LINE: Final = 1 << 20
"""The longest line either side reads."""
IO_TIMEOUT: Final = 5.0
"""How long either side waits for the other to send its line."""
ANSWER_TIMEOUT: Final = 30.0
"""How long the daemon's main thread may take to take a command up, at most."""
_PEERCRED: Final = struct.Struct("3i")


class ControlError(GatewaydError):
    """The control channel failed: nothing listens, no permission, a bad answer."""


class NotRunningError(ControlError):
    """Nothing listens on the control socket: gatewayd is not running."""


@dataclass(slots=True)
class Request:
    """A command on its way to the main thread, and the reply it waits for.

    Whichever comes first wins: the main thread taking it up (:meth:`take`), or
    the caller's patience running out (:meth:`abandon`); an abandoned command is
    never carried out.
    """

    command: str
    sn: str | None
    timeout: float = ANSWER_TIMEOUT
    entries: list[object] = field(default_factory=list, repr=False)
    """``import``: the records and CIKs to take (:mod:`gatewayd.core.entries`); never shown."""
    prefer_bundle: bool = False
    """``import``: a stored CIK that differs from its entry's is replaced."""
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fate: str = "waiting"

    def take(self) -> bool:
        """The main thread takes the command up; False if its caller has given up."""
        with self._lock:
            if self._fate == "abandoned":
                return False
            self._fate = "taken"
            return True

    def abandon(self) -> bool:
        """The caller gives up; False if the main thread has taken the command up."""
        with self._lock:
            if self._fate == "taken":
                return False
            self._fate = "abandoned"
            return True

    def answer(self, reply: dict[str, object]) -> None:
        self.reply = reply
        self.done.set()


def parse_request(line: bytes) -> Request:
    """The request a line asks for; ControlError if it is not one."""
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"not a JSON request: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("expected a JSON object")
    command, sn, timeout = data.get("command"), data.get("sn"), data.get("timeout", ANSWER_TIMEOUT)
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ControlError("'timeout' must be a number of seconds greater than 0")
    timeout = min(float(timeout), ANSWER_TIMEOUT)
    if command == "import":
        entries, prefer = data.get("entries"), data.get("prefer_bundle", False)
        if not isinstance(entries, list) or not isinstance(prefer, bool):
            raise ControlError("import needs a list of 'entries' and 'prefer_bundle' true or false")
        return Request("import", None, timeout, entries, prefer)
    if command in UNNAMED:
        return Request(str(command), None, timeout)
    if not isinstance(sn, str) or not sn:
        raise ControlError(f"{command} needs a serial number, 'sn'")
    return Request(str(command), sn, timeout)


class ControlServer:
    """Accepts requests on a thread of its own and hands each to ``submit``."""

    def __init__(self, path: Path, submit: Callable[[Request], None]) -> None:
        self.path = path
        self._submit = submit
        self._uid = os.geteuid()
        self._sock = _listen(path)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(IO_TIMEOUT)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    self._handle(conn)
                except OSError as exc:
                    log.warning("control request failed: %s", exc)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, _gid = _PEERCRED.unpack(creds)
        try:
            # the request is read whoever sent it, so that every caller gets an answer
            # rather than a broken pipe
            line = _receive(conn)
        except ControlError as exc:
            _send(conn, {"ok": False, "message": str(exc)})
            return
        if uid not in {0, self._uid}:
            log.warning("control request from uid %d (pid %d) refused", uid, pid)
            text = f"permission denied: only root and uid {self._uid} may control gatewayd"
            _send(conn, {"ok": False, "message": text})
            return
        try:
            request = parse_request(line)
        except ControlError as exc:
            _send(conn, {"ok": False, "message": str(exc)})
            return
        self._submit(request)
        if not request.done.wait(request.timeout) and request.abandon():
            text = f"gatewayd did not take the command up within {request.timeout:g} s: not done"
            _send(conn, {"ok": False, "message": text})
            return
        if not request.done.wait(ANSWER_TIMEOUT):  # taken up just now: being carried out
            text = "gatewayd is still carrying the command out; see its journal"
            _send(conn, {"ok": False, "message": text})
            return
        _send(conn, request.reply)


def serve(path: Path, submit: Callable[[Request], None]) -> ControlServer | None:
    """The control socket; without it gatewayd still runs, and says gatewayctl cannot reach it.

    A second gatewayd on the same socket is refused (:class:`ControlError`).
    """
    try:
        return ControlServer(path, submit)
    except ControlError:
        raise
    except OSError as exc:
        log.warning(
            "no control socket at %s (%s): gatewayctl status, reload, republish, retry, "
            "forget, rotate and import cannot reach this gatewayd",
            path,
            exc.strerror or exc,
        )
        return None


def call(
    path: Path,
    command: str,
    sn: str | None = None,
    timeout: float = ANSWER_TIMEOUT,
    **more: object,
) -> dict[str, object]:
    """Send one command to the daemon listening on ``path`` and return its reply; a
    command it has not taken up within ``timeout`` seconds is not carried out.
    ``more``: the command's other fields (``import``'s entries)."""
    request: dict[str, object] = {"command": command, "timeout": timeout, **more}
    if sn is not None:
        request["sn"] = sn
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout + ANSWER_TIMEOUT + IO_TIMEOUT)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunningError(
                f"gatewayd is not running, or not listening on {path} ({exc.strerror})"
            ) from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: run gatewayctl as root or as gatewayd's user"
            ) from None
        _send(sock, request)
        line = _receive(sock)
    try:
        reply = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"gatewayd sent an answer that is not one: {line[:80]!r}")
    return reply


def _listen(path: Path) -> socket.socket:
    """Bind the socket at ``path``, taking over a stale file but never a live daemon's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlError(f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left by a gatewayd that did not stop cleanly
            else:
                raise ControlError(f"another gatewayd is listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(path))
        path.chmod(0o600)
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def _receive(sock: socket.socket) -> bytes:
    data = bytearray()
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ControlError("message too long")
    return bytes(data.split(b"\n", 1)[0])
