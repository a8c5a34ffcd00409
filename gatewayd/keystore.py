"""Where CIKs live: the keyring adapter and gatewayd's own headless backend.

:class:`Keystore` is the one place the daemon and gatewayctl touch secrets; it
turns every keyring failure into :class:`~gatewayd.errors.KeystoreError`.

:class:`FileKeyring` keeps one file per secret in a 0700 folder. A file is
named by the SHA-256 (hex) of the JSON array ``[service, username]`` and holds
a 6-byte header, ``GWKR\\x01P`` (plain) or ``GWKR\\x01E`` (encrypted), then the
JSON object ``{"service", "username", "password"}``. Encrypted files carry a
12-byte nonce and that JSON sealed with AES-256-GCM, with the header and the
file name as associated data. Files are written atomically and durably: a
0600 temp file opened with ``O_EXCL``, fsync, rename, fsync of the folder.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import importlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from keyring.backend import KeyringBackend
from keyring.errors import InitError, KeyringError, PasswordDeleteError, PasswordSetError

from gatewayd.errors import KeystoreError
from gatewayd.secret import Secret

log = logging.getLogger(__name__)

DEFAULT_FOLDER: Final = Path("/var/lib/gatewayd/keyring")
TOKEN_USERNAME: Final = "vendor-token"  # noqa: S105 (a user name, not a secret)
KEY_CREDENTIAL: Final = "gatewayd-keyring-key"
KEY_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_PLAIN: Final = b"GWKR\x01P"
_SEALED: Final = b"GWKR\x01E"
_FIELDS: Final = ("service", "username", "password")


class FileKeyring(KeyringBackend):
    """A headless keyring backend: one atomically written file per secret."""

    priority = 0.1

    def __init__(self, folder: Path | None = None, key: bytes | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call, unused-ignore]
        if key is not None and len(key) != KEY_SIZE:
            raise InitError(f"a FileKeyring key must be {KEY_SIZE} bytes, not {len(key)}")
        self._folder = Path(folder) if folder is not None else DEFAULT_FOLDER
        self._aead = AESGCM(key) if key is not None else None

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def __repr__(self) -> str:
        return f"FileKeyring(folder={str(self._folder)!r}, encrypted={self.encrypted})"

    def get_password(self, service: str, username: str) -> str | None:
        name = _entry_name(service, username)
        try:
            blob = (self._folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyringError(f"cannot read an entry in {self._folder}: {_why(exc)}") from exc
        entry = self._open(name, blob)
        if (entry["service"], entry["username"]) != (service, username):
            raise KeyringError(f"{self._folder / name} belongs to another service or username")
        return entry["password"]

    def set_password(self, service: str, username: str, password: str) -> None:
        name = _entry_name(service, username)
        entry = dict(zip(_FIELDS, (service, username, password), strict=True))
        blob = self._seal(name, json.dumps(entry).encode("ascii"))
        try:
            self._write(name, blob)
        except OSError as exc:
            raise PasswordSetError(f"cannot write an entry in {self._folder}: {_why(exc)}") from exc

    def delete_password(self, service: str, username: str) -> None:
        path = self._folder / _entry_name(service, username)
        try:
            path.unlink()
        except FileNotFoundError as exc:
            raise PasswordDeleteError(f"no such entry in {self._folder}") from exc
        except OSError as exc:
            raise PasswordDeleteError(
                f"cannot delete an entry in {self._folder}: {_why(exc)}"
            ) from exc
        try:
            _fsync_folder(self._folder)
        except OSError as exc:
            raise PasswordDeleteError(f"cannot sync {self._folder}: {_why(exc)}") from exc

    def _seal(self, name: str, payload: bytes) -> bytes:
        if self._aead is None:
            return _PLAIN + payload
        nonce = os.urandom(_NONCE_SIZE)
        return _SEALED + nonce + self._aead.encrypt(nonce, payload, _SEALED + name.encode())

    def _open(self, name: str, blob: bytes) -> dict[str, str]:
        where = self._folder / name
        header, body = blob[: len(_PLAIN)], blob[len(_PLAIN) :]
        if header == _SEALED:
            if self._aead is None:
                raise KeyringError(f"{where} is encrypted and no keystore key was given")
            nonce, sealed = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
            try:
                body = self._aead.decrypt(nonce, sealed, header + name.encode())
            except InvalidTag as exc:
                raise KeyringError(
                    f"{where} cannot be decrypted: wrong keystore key, or the file was altered"
                ) from exc
        elif header == _PLAIN:
            if self._aead is not None:
                log.warning("%s is stored unencrypted although a keystore key is set", where)
        else:
            raise KeyringError(f"{where} is not a gatewayd keyring entry")
        try:
            entry = json.loads(body)
        except ValueError as exc:
            raise KeyringError(f"{where} is corrupt: its entry is not valid JSON") from exc
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in _FIELDS):
            raise KeyringError(f"{where} is corrupt: its entry lacks a field")
        return {field: entry[field] for field in _FIELDS}

    def _write(self, name: str, blob: bytes) -> None:
        self._ensure_folder()
        temp = self._folder / f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            temp.replace(self._folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_folder(self._folder)

    def _ensure_folder(self) -> None:
        folder = self._folder
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
            _fsync_folder(folder.parent)
            return
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & 0o077:
            log.warning("tightening the mode of %s from %04o to 0700", folder, mode)
            folder.chmod(0o700)


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


def load_key(key_file: Path | None, credentials_dir: str | None) -> bytes | None:
    """The keystore key from ``key_file``, else from the systemd credential, else None."""
    if key_file is not None:
        path = key_file
    elif credentials_dir:
        path = Path(credentials_dir, KEY_CREDENTIAL)
        if not path.exists():
            return None
    else:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore key {path}: {_why(exc)}") from exc
    key = _parse_key(data)
    if key is None:
        raise KeystoreError(
            f"{path}: expected a keystore key of {KEY_SIZE} raw bytes, {2 * KEY_SIZE} hex "
            f"characters or the base64 of {KEY_SIZE} bytes; its {len(data)} bytes are none of these"
        )
    return key


def _parse_key(data: bytes) -> bytes | None:
    if len(data) == KEY_SIZE:
        return data
    text = data.strip()
    try:
        if len(text) == 2 * KEY_SIZE:
            key = bytes.fromhex(text.decode("ascii"))
        else:
            key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_SIZE else None


def open_backend(dotted: str, folder: Path, key: bytes | None) -> KeyringBackend:
    """Construct the backend class named ``module.Class``; never auto-detects."""
    module_name, _, class_name = dotted.rpartition(".")
    if not module_name or not class_name:
        raise KeystoreError(f"keyring backend {dotted!r}: expected a dotted module.Class name")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise KeystoreError(f"keyring backend {dotted}: cannot import it: {exc}") from exc
    if not isinstance(found, type) or not issubclass(found, KeyringBackend):
        raise KeystoreError(f"keyring backend {dotted}: not a keyring.backend.KeyringBackend")
    try:
        if issubclass(found, FileKeyring):
            return found(folder=folder, key=key)
        if key is not None:
            raise KeystoreError(
                f"keyring backend {dotted} cannot use a keystore key; "
                f"use {FileKeyring.__module__}.FileKeyring or give no key"
            )
        found.priority  # noqa: B018 (a backend that cannot run here raises RuntimeError)
        return found()
    except (KeyringError, OSError, RuntimeError, TypeError, ValueError) as exc:
        raise KeystoreError(f"keyring backend {dotted}: cannot set it up: {exc}") from exc


class Keystore:
    """Stores, loads and deletes CIKs; the username is the serial, case preserved."""

    def __init__(self, backend: KeyringBackend, service_prefix: str = "gatewayd") -> None:
        self._backend = backend
        self._prefix = service_prefix

    @property
    def backend(self) -> KeyringBackend:
        return self._backend

    def service(self, vendor: str, model: str) -> str:
        return f"{self._prefix}/{vendor}/{model}"

    def store(self, vendor: str, model: str, sn: str, cik: Secret) -> None:
        """Store the CIK of ``sn``; with FileKeyring it is on disk when this returns."""
        with _mapped("store the CIK of", sn, cik.reveal()):
            self._backend.set_password(self.service(vendor, model), sn, cik.reveal())
        log.debug("stored the CIK of %s in %s", sn, self.service(vendor, model))

    def load(self, vendor: str, model: str, sn: str) -> Secret | None:
        with _mapped("load the CIK of", sn):
            value = self._backend.get_password(self.service(vendor, model), sn)
        return None if value is None else Secret(value)

    def store_token(self, vendor: str, token: Secret) -> None:
        """Keep the vendor API token of ``vendor`` (under the service ``<prefix>/<vendor>``)."""
        with _mapped("store the vendor token of", vendor, token.reveal()):
            self._backend.set_password(f"{self._prefix}/{vendor}", TOKEN_USERNAME, token.reveal())

    def load_token(self, vendor: str) -> Secret | None:
        with _mapped("load the vendor token of", vendor):
            value = self._backend.get_password(f"{self._prefix}/{vendor}", TOKEN_USERNAME)
        return None if value is None else Secret(value)

    def delete(self, vendor: str, model: str, sn: str) -> bool:
        """Delete the CIK of ``sn``; False if there was none."""
        service = self.service(vendor, model)
        with _mapped("delete the CIK of", sn):
            try:
                self._backend.delete_password(service, sn)
            except PasswordDeleteError:
                if self._backend.get_password(service, sn) is None:
                    return False
                raise
        log.debug("deleted the CIK of %s from %s", sn, service)
        return True


@contextlib.contextmanager
def _mapped(action: str, sn: str, secret: str = "") -> Iterator[None]:
    try:
        yield
    except (KeyringError, OSError, ValueError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if secret:
            detail = detail.replace(secret, "<secret>")
        raise KeystoreError(f"cannot {action} serial {sn!r}: {detail}") from exc
