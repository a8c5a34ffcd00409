"""One flush for many writes: ``syncfs(2)`` of each file system gatewayd writes to.

An fsync per file costs the storage one flush each: several milliseconds on an
SD card. :class:`Volumes` makes everything written to its folders' file systems
durable with one ``syncfs`` per file system (the keystore and the state
database are usually on one). ``syncfs`` returns the write-back errors of the
file system since the last call on the same descriptor (Linux 5.8 and later),
so each folder is opened once and kept open.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path


class Volumes:
    """The file systems of ``folders``, each flushed by :meth:`sync`."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self._fds: list[int] = []
        self.names: list[str] = []
        """One folder per file system, for messages."""
        devices: set[int] = set()
        try:
            for folder in folders:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                device = os.fstat(fd).st_dev
                if device in devices:
                    os.close(fd)
                    continue
                devices.add(device)
                self._fds.append(fd)
                self.names.append(str(folder))
        except OSError:
            self.close()
            raise
        self._syncfs: Callable[[int], int] | None = None

    def sync(self) -> None:
        """Flush every file system: what was written to them before is on the storage
        when this returns; OSError otherwise."""
        syncfs = self._syncfs or self._load()
        for fd, name in zip(self._fds, self.names, strict=True):
            if syncfs(fd) != 0:
                import ctypes  # noqa: PLC0415 (loaded by _load already)

                errno = ctypes.get_errno()
                raise OSError(errno, os.strerror(errno), name)

    def _load(self) -> Callable[[int], int]:
        """libc's syncfs, through ctypes: Python has no os.syncfs. Loaded with the first
        flush (a gateway with nothing to activate never needs it)."""
        import ctypes  # noqa: PLC0415 (see above)

        function = ctypes.CDLL(None, use_errno=True).syncfs
        function.argtypes = [ctypes.c_int]
        function.restype = ctypes.c_int
        syncfs: Callable[[int], int] = function
        self._syncfs = syncfs
        return syncfs

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
