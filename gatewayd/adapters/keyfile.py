"""The key that seals gatewayd's keyring entries: a file named in the configuration, or
the systemd credential ``gatewayd-keyring-key``."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Final

from gatewayd.core.errors import KeystoreError

KEY_CREDENTIAL: Final = "gatewayd-keyring-key"
KEY_SIZE: Final = 32


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
        raise KeystoreError(
            f"cannot read the keystore key {path}: {(exc.strerror or type(exc).__name__)}"
        ) from exc
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
