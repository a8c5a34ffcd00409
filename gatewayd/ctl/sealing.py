"""The file ``gatewayctl export`` writes and ``import`` reads: a JSON document sealed with a
passphrase.

The file is ``GWBUNDLE``, a format version byte, the scrypt parameters (log2 of N,
r, p: one byte each), a 16-byte salt and a 12-byte nonce, then the JSON document
sealed with AES-256-GCM under the key scrypt derives from the passphrase, with
everything before it as associated data. A wrong passphrase and a file altered
anywhere both fail to open, and then nothing is changed. Only the scrypt parameters
gatewayctl writes are accepted (:data:`COSTS`): a header asking for others is refused
before any key is derived.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any, Final

from gatewayd.core.errors import GatewaydError

MAGIC: Final = b"GWBUNDLE"
VERSION: Final = 1
_HEADER: Final = struct.Struct(">8sBBBB16s12s")
_LOG2_N, _R, _P = 15, 8, 1
"""scrypt's cost: 32 MiB and about a tenth of a second on a Raspberry Pi 4."""
COSTS: Final = frozenset({(_LOG2_N, _R, _P)})
"""The scrypt parameters (log2 of N, r, p) a bundle may ask for: the ones gatewayctl
writes. Anything else is refused before a key is derived: the header is not trusted to
set what opening it costs (N = 2^20 and r = 32 would take 4 GiB)."""


class BundleError(GatewaydError):
    """A bundle that cannot be opened: a wrong passphrase, a damaged file, an unknown format."""


def seal(document: dict[str, Any], passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 (here only)

    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, VERSION, _LOG2_N, _R, _P, salt, nonce)
    key = _key(passphrase, salt, _LOG2_N, _R, _P)
    body = json.dumps(document, separators=(",", ":")).encode()
    return header + AESGCM(key).encrypt(nonce, body, header)


def unseal(blob: bytes, passphrase: bytes) -> dict[str, Any]:
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415 (here only)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    if len(blob) < _HEADER.size or not blob.startswith(MAGIC):
        raise BundleError("not a gatewayd bundle")
    _magic, version, log2_n, r, p, salt, nonce = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise BundleError(f"bundle format {version}; this gatewayctl reads format {VERSION}")
    if (log2_n, r, p) not in COSTS:
        raise BundleError(
            f"the bundle is damaged, or not gatewayctl's: it asks for a key derived with "
            f"scrypt N = 2^{log2_n}, r = {r}, p = {p}; gatewayctl writes and reads only "
            f"N = 2^{_LOG2_N}, r = {_R}, p = {_P}"
        )
    header = blob[: _HEADER.size]
    key = _key(passphrase, salt, log2_n, r, p)
    try:
        body = AESGCM(key).decrypt(nonce, blob[_HEADER.size :], header)
    except InvalidTag:
        raise BundleError("wrong passphrase, or the bundle is damaged") from None
    try:
        document: dict[str, Any] = json.loads(body)
    except ValueError:
        raise BundleError("the bundle is damaged (its content is not JSON)") from None
    return document


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415 (here only)

    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(passphrase)


def read_passphrase(path: Path) -> bytes:
    """The passphrase in ``path``, less a final newline; a warning on stderr when the file
    is readable by its group or by others."""
    try:
        with path.open("rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            passphrase = file.read().rstrip(b"\r\n")
    except OSError as exc:
        raise BundleError(f"cannot read the passphrase file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(
            f"gatewayctl: warning: the passphrase file {path} is readable by group or others "
            f"(mode {mode:04o}); whoever has it and the bundle has every CIK: chmod 600 it",
            file=sys.stderr,
        )
    if not passphrase:
        raise BundleError(f"the passphrase file {path} is empty")
    return passphrase
