"""gatewayd's file store (:mod:`gatewayd.adapters.filestore`) as a real keyring backend.

``PYTHON_KEYRING_BACKEND=gatewayd.adapters.keystore.FileKeyring`` lets keyring's API
and command line read and write the same files the daemon does; it passes
keyring's own ``BackendBasicTests``. The store's errors become keyring's.
"""

from __future__ import annotations

from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import InitError, KeyringError, PasswordDeleteError, PasswordSetError

from gatewayd.adapters.filestore import FileStore, FileStoreError


class FileKeyring(KeyringBackend):
    """A headless keyring backend: one atomically written file per secret."""

    priority = 0.1

    def __init__(self, folder: Path | None = None, key: bytes | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call, unused-ignore]
        try:
            self._store = FileStore(folder, key)
        except FileStoreError as exc:
            raise InitError(str(exc)) from exc

    @property
    def folder(self) -> Path:
        return self._store.folder

    @property
    def encrypted(self) -> bool:
        return self._store.encrypted

    def __repr__(self) -> str:
        return f"FileKeyring(folder={str(self.folder)!r}, encrypted={self.encrypted})"

    def get_password(self, service: str, username: str) -> str | None:
        try:
            return self._store.get_password(service, username)
        except FileStoreError as exc:
            raise KeyringError(str(exc)) from exc

    def set_password(self, service: str, username: str, password: str) -> None:
        try:
            self._store.set_password(service, username, password)
        except FileStoreError as exc:
            raise PasswordSetError(str(exc)) from exc

    def delete_password(self, service: str, username: str) -> None:
        try:
            self._store.delete_password(service, username)
        except FileStoreError as exc:
            raise PasswordDeleteError(str(exc)) from exc
