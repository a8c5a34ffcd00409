"""A keyring backend from outside gatewayd, for the end-to-end tests of the keyring seam.

A real ``keyring.backend.KeyringBackend`` that gatewayd loads by its dotted name
(``jsonkeyring.JsonKeyring``, with this folder on ``PYTHONPATH``), as it would
load any third-party backend. It keeps every secret in one JSON file under
``$XDG_DATA_HOME``, rewritten atomically and fsynced, and keeps user names
apart by case, which gatewayd checks at start. (keyrings.alt's file backends
fold case: gatewayd refuses them.)
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class JsonKeyring(KeyringBackend):
    priority = 1

    _lock = threading.Lock()

    @property
    def path(self) -> Path:
        home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(home) / "jsonkeyring" / "secrets.json"

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        with temp.open("w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        temp.replace(self.path)

    def get_password(self, service: str, username: str) -> str | None:
        with self._lock:
            return self._read().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._lock:
            data = self._read()
            data.setdefault(service, {})[username] = password
            self._write(data)

    def delete_password(self, service: str, username: str) -> None:
        with self._lock:
            data = self._read()
            if username not in data.get(service, {}):
                raise PasswordDeleteError(username)
            del data[service][username]
            self._write(data)
