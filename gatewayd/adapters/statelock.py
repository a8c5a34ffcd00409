"""The state folder's lock: one process at a time writes gatewayd's state and keystore.

gatewayd holds an exclusive ``flock(2)`` on ``<state_dir>/.lock`` for its whole life;
a gatewayctl command that writes the state folder itself (``import`` while gatewayd is
stopped) takes the same lock first, and whoever finds it taken is refused. The kernel
releases a lock when its holder exits, however it exits: there is never a stale lock to
clear by hand. The file itself is never deleted (a process could lock the file another
has just unlinked while a third creates a new one).

The holder writes its role and process id into the file (``gatewayd 1234``) for the
refused side's message only: who holds the lock is the kernel's answer, never that text.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from gatewayd.core.errors import StateError

LOCK_NAME: Final = ".lock"
GATEWAYD: Final = "gatewayd"
GATEWAYCTL: Final = "gatewayctl"
_ROLES: Final = frozenset({GATEWAYD, GATEWAYCTL})


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, as its lock file says: ``role`` GATEWAYD or GATEWAYCTL, and
    ``pid``; both None when the file does not say (its holder has not written it yet)."""

    role: str | None = None
    pid: int | None = None

    def __str__(self) -> str:
        if self.role is None:
            return "another process"
        return f"{self.role} (pid {self.pid})"


class StateLockedError(StateError):
    """Another process holds the state folder's lock."""

    def __init__(self, folder: Path, holder: Holder) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(f"the state folder {folder} is locked by {holder}")


class StateLock:
    """The state folder's lock, held from :meth:`take` until :meth:`release` (or until
    the process ends)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    @classmethod
    def take(cls, folder: Path, role: str) -> StateLock:
        """The lock of ``folder`` (made, mode 0700, if it does not exist), for ``role``;
        StateLockedError if another process holds it, StateError if it cannot be taken.

        A lock file root creates is given to the folder's owner, so that a gatewayctl
        run as root never leaves gatewayd a lock it cannot open."""
        path = folder / LOCK_NAME
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise StateError(f"cannot lock the state folder: {path}: {why}") from exc
        try:
            _give_to_owner(fd, folder)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateLockedError(folder, _holder(fd)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{role} {os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            why = exc.strerror or type(exc).__name__
            raise StateError(f"cannot lock the state folder: {path}: {why}") from exc
        except BaseException:
            os.close(fd)
            raise
        return cls(folder, fd)

    def release(self) -> None:
        """Let the lock go (its file emptied first); once is enough."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.release()


def _give_to_owner(fd: int, folder: Path) -> None:
    """Run as root, make the lock file the folder's owner's (it may have just created it)."""
    if os.geteuid() != 0:
        return
    mine, theirs = os.fstat(fd), folder.stat()
    if (mine.st_uid, mine.st_gid) != (theirs.st_uid, theirs.st_gid):
        os.fchown(fd, theirs.st_uid, theirs.st_gid)


def _holder(fd: int) -> Holder:
    """What the lock file says of its holder."""
    try:
        words = os.pread(fd, 64, 0).decode("ascii").split()
    except (OSError, UnicodeDecodeError):
        return Holder()
    if len(words) != 2 or words[0] not in _ROLES or not words[1].isdigit():
        return Holder()
    return Holder(words[0], int(words[1]))
