"""gatewayd's own headless keyring store: one file per secret, written durably.

Secrets live in a 0700 folder. A file is named by the SHA-256 (hex) of the
JSON array ``[service, username]`` and holds a 6-byte header, ``GWKR\\x01P``
(plain) or ``GWKR\\x01E`` (encrypted), then the JSON object ``{"service",
"username", "password"}``. Encrypted files carry a 12-byte nonce and that JSON
sealed with AES-256-GCM, with the header and the file name as associated data.
Files are written atomically and durably: a 0600 temp file opened with
``O_EXCL``, fsync, rename, fsync of the folder. A temp file left by a stop
between the fsync and the rename holds a complete entry: :meth:`FileStore.recover`
puts it in place, and removes the ones that are not complete. A batch of entries
is written with :meth:`FileStore.stage` (no fsync), made durable by one flush of
the file system (:mod:`gatewayd.adapters.disk`), then renamed into place with
:meth:`Staged.place`: a stop anywhere leaves each entry whole, in place or in
its temp file.

This module does not import the keyring library: the daemon uses the store
directly. :class:`gatewayd.adapters.keystore.FileKeyring` is the same store as a keyring
backend, for keyring's API and command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gatewayd.adapters.keyfile import KEY_SIZE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

DEFAULT_FOLDER: Final = Path("/var/lib/gatewayd/keyring")
_NONCE_SIZE: Final = 12
_PLAIN: Final = b"GWKR\x01P"
_SEALED: Final = b"GWKR\x01E"
_FIELDS: Final = ("service", "username", "password")


class FileStoreError(Exception):
    """The store cannot read, write or delete an entry, or its key is unusable."""


class EntryMissing(FileStoreError):  # noqa: N818 (named for what it reports)
    """A delete found no such entry."""


@dataclass(frozen=True, slots=True)
class Staged:
    """An entry written to its temp file, to be renamed to its final name."""

    temp: Path
    final: Path

    def place(self) -> None:
        """Rename the entry into place (not flushed: the temp file already is)."""
        try:
            self.temp.replace(self.final)
        except OSError as exc:
            self.discard()
            raise FileStoreError(
                f"cannot write an entry in {self.final.parent}: {_why(exc)}"
            ) from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.temp.unlink()


class FileStore:
    """One atomically written file per secret; the methods of a keyring backend."""

    def __init__(self, folder: Path | None = None, key: bytes | None = None) -> None:
        if key is not None and len(key) != KEY_SIZE:
            raise FileStoreError(f"a FileKeyring key must be {KEY_SIZE} bytes, not {len(key)}")
        self._folder = Path(folder) if folder is not None else DEFAULT_FOLDER
        if key is not None and importlib.util.find_spec("cryptography") is None:
            raise FileStoreError("a keystore key is set, and cryptography is not installed")
        self._folder_ready = False
        self._key = key
        self._cipher: AESGCM | None = None

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    def unsealed(self) -> FileStore:
        """The same folder without the key: its entries are written in plain text."""
        return FileStore(self._folder)

    def prepare(self) -> None:
        """Make the cipher now, if entries are sealed, rather than with the first entry
        sealed or opened: for a caller that will need it soon."""
        if self._key is not None:
            self._aead(self._key)

    def __repr__(self) -> str:
        return f"FileStore(folder={str(self._folder)!r}, encrypted={self.encrypted})"

    def has(self, service: str, username: str) -> bool:
        """Whether an entry is kept for ``service`` and ``username`` (it is not read)."""
        # a str path: for the 10,000 entries looked for at start, Path objects cost 0.6 MiB
        # of resident memory that stays (measured with bench/footprint.py)
        name = os.path.join(self._folder, _entry_name(service, username))  # noqa: PTH118
        return os.path.lexists(name)

    def get_password(self, service: str, username: str) -> str | None:
        name = _entry_name(service, username)
        try:
            blob = (self._folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileStoreError(f"cannot read an entry in {self._folder}: {_why(exc)}") from exc
        entry = self._open(name, blob)
        if (entry["service"], entry["username"]) != (service, username):
            raise FileStoreError(f"{self._folder / name} belongs to another service or username")
        return entry["password"]

    def set_password(self, service: str, username: str, password: str) -> None:
        name = _entry_name(service, username)
        entry = dict(zip(_FIELDS, (service, username, password), strict=True))
        blob = self._seal(name, json.dumps(entry).encode("ascii"))
        try:
            self._write(name, blob)
        except OSError as exc:
            raise FileStoreError(f"cannot write an entry in {self._folder}: {_why(exc)}") from exc

    def delete_password(self, service: str, username: str) -> None:
        path = self._folder / _entry_name(service, username)
        try:
            path.unlink()
        except FileNotFoundError as exc:
            raise EntryMissing(f"no such entry in {self._folder}") from exc
        except OSError as exc:
            raise FileStoreError(f"cannot delete an entry in {self._folder}: {_why(exc)}") from exc
        try:
            _fsync_folder(self._folder)
        except OSError as exc:
            raise FileStoreError(f"cannot sync {self._folder}: {_why(exc)}") from exc

    def recover(self) -> int:
        """Finish the writes a stop interrupted: a complete temp file takes its entry's
        place (it is the newest value: each start recovers before anything is written),
        an incomplete one is removed. Returns how many were put in place."""
        try:
            temps = sorted(self._folder.glob(".*.tmp"))
        except OSError as exc:
            raise FileStoreError(f"cannot list {self._folder}: {_why(exc)}") from exc
        recovered = 0
        for temp in temps:
            name = temp.name[1:].split(".", 1)[0]
            try:
                blob = temp.read_bytes()
                self._open(name, blob)
            except OSError as exc:
                log.warning("%s cannot be read (%s); it is left in place", temp, _why(exc))
                continue
            except FileStoreError as exc:
                if blob.startswith(_SEALED):  # torn, or sealed with another key: no telling
                    log.warning("%s cannot be checked (%s); it is left in place", temp, exc)
                    continue
                log.warning("%s: an incomplete write, left by a stop, is removed", temp)
                temp.unlink(missing_ok=True)
                continue
            temp.replace(self._folder / name)
            recovered += 1
        if temps:
            _fsync_folder(self._folder)
        return recovered

    def _aead(self, key: bytes) -> AESGCM:
        """The cipher, made when an entry is first sealed or opened: cryptography is loaded
        then, not at start (an idle gateway never needs it; it costs 5 to 10 MiB)."""
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

            self._cipher = AESGCM(key)
        return self._cipher

    def _seal(self, name: str, payload: bytes) -> bytes:
        if self._key is None:
            return _PLAIN + payload
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._aead(self._key).encrypt(nonce, payload, _SEALED + name.encode())
        return _SEALED + nonce + sealed

    def _open(self, name: str, blob: bytes) -> dict[str, str]:
        where = self._folder / name
        header, body = blob[: len(_PLAIN)], blob[len(_PLAIN) :]
        if header == _SEALED:
            if self._key is None:
                raise FileStoreError(f"{where} is encrypted and no keystore key was given")
            aead = self._aead(self._key)
            from cryptography.exceptions import InvalidTag  # noqa: PLC0415 (loaded with it)

            nonce, sealed = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
            try:
                body = aead.decrypt(nonce, sealed, header + name.encode())
            except InvalidTag as exc:
                raise FileStoreError(
                    f"{where} cannot be decrypted: wrong keystore key, or the file was altered"
                ) from exc
        elif header == _PLAIN:
            if self._key is not None:
                log.warning("%s is stored unencrypted although a keystore key is set", where)
        else:
            raise FileStoreError(f"{where} is not a gatewayd keyring entry")
        try:
            entry = json.loads(body)
        except ValueError as exc:
            raise FileStoreError(f"{where} is corrupt: its entry is not valid JSON") from exc
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in _FIELDS):
            raise FileStoreError(f"{where} is corrupt: its entry lacks a field")
        return {field: entry[field] for field in _FIELDS}

    def _write(self, name: str, blob: bytes) -> None:
        self._stage(name, blob, sync=True).place()
        _fsync_folder(self._folder)

    def stage(self, service: str, username: str, password: str) -> Staged:
        """Write an entry to its temp file without waiting for the disk; :meth:`Staged.place`
        puts it in place once the caller has flushed the file system (a stop before
        that leaves a temp file, which :meth:`recover` completes)."""
        name = _entry_name(service, username)
        entry = dict(zip(_FIELDS, (service, username, password), strict=True))
        blob = self._seal(name, json.dumps(entry).encode("ascii"))
        try:
            return self._stage(name, blob, sync=False)
        except OSError as exc:
            raise FileStoreError(f"cannot write an entry in {self._folder}: {_why(exc)}") from exc

    def _stage(self, name: str, blob: bytes, *, sync: bool) -> Staged:
        if not self._folder_ready:
            self._ensure_folder()
        staged = Staged(self._folder / f".{name}.{secrets.token_hex(8)}.tmp", self._folder / name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(staged.temp, flags, 0o600)
            try:
                written = 0
                while written < len(blob):
                    written += os.write(fd, blob[written:])
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self._folder_ready = False  # looked at again before the next write
            staged.discard()
            raise
        return staged

    def _ensure_folder(self) -> None:
        """Make the folder, or tighten its mode; once, and again after a failed write."""
        folder = self._folder
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
            _fsync_folder(folder.parent)
        else:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if mode & 0o077:
                log.warning("tightening the mode of %s from %04o to 0700", folder, mode)
                folder.chmod(0o700)
        self._folder_ready = True


def _entry_name(service: str, username: str) -> str:
    return hashlib.sha256(json.dumps([service, username]).encode("ascii")).hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
