"""``gatewayctl export`` and ``import``: every node record and CIK of a gateway in one file,
sealed with a passphrase, to move them to new hardware or keep them safe.

The file is ``GWBUNDLE``, a format version byte, the scrypt parameters (log2 of N,
r, p: one byte each), a 16-byte salt and a 12-byte nonce, then the JSON document
sealed with AES-256-GCM under the key scrypt derives from the passphrase, with
everything before it as associated data. A wrong passphrase and a file altered
anywhere both fail to open, and then nothing is changed.

An import writes to the gateway's state folder, so it runs as the folder's owner
(``sudo -u gatewayd gatewayctl import ...``) while gatewayd is stopped. A CIK
stored already that differs from the bundle's is kept unless ``--prefer-bundle``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import secrets
import struct
import sys
from pathlib import Path
from typing import Any, Final

from gatewayd.adapters.disk import Volumes
from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.state import StateDB
from gatewayd.config.schema import Config
from gatewayd.core.errors import GatewaydError
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.protocol import cik_shape
from gatewayd.core.secret import Secret
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK
from gatewayd.daemon import control
from gatewayd.daemon.wiring import open_keystore

MAGIC: Final = b"GWBUNDLE"
VERSION: Final = 1
_HEADER: Final = struct.Struct(">8sBBBB16s12s")
_LOG2_N, _R, _P = 15, 8, 1
"""scrypt's cost: 32 MiB and about a tenth of a second on a Raspberry Pi 4."""
_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Node))


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
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise BundleError("the bundle is damaged (its key parameters are out of range)")
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
    try:
        passphrase = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise BundleError(f"cannot read the passphrase file {path}: {exc.strerror}") from exc
    if not passphrase:
        raise BundleError(f"the passphrase file {path} is empty")
    return passphrase


def _entry(node: Node, cik: Secret | None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(node, name)
        entry[name] = value.value if isinstance(value, State | Reason) else value
    entry["cik"] = None if cik is None else cik.reveal()
    return entry


def _node(entry: object) -> tuple[Node, Secret | None]:
    """A bundle's entry as a record and its CIK; BundleError for one that is no such."""
    try:
        assert isinstance(entry, dict)  # noqa: S101 (caught below with the rest)
        fields = {name: entry[name] for name in _FIELDS}
        fields["state"] = State(fields["state"])
        fields["reason"] = None if fields["reason"] is None else Reason(fields["reason"])
        node = Node(**fields)
        cik = entry["cik"]
        assert cik is None or (isinstance(cik, str) and cik_shape(cik) is None)  # noqa: S101
    except (AssertionError, KeyError, TypeError, ValueError):
        raise BundleError("the bundle is damaged (an entry is not a node record)") from None
    return node, None if cik is None else Secret(cik)


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    keystore = open_keystore(config)
    with StateDB.in_dir(config.gateway.state_dir, readonly=True) as db:
        nodes = db.all()
    entries = [_entry(node, keystore.load(node.vendor, node.model, node.sn)) for node in nodes]
    document = {
        "format": VERSION,
        "gateway": config.gateway.id,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nodes": entries,
    }
    out: Path = args.output
    temp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(seal(document, passphrase))
        file.flush()
        os.fsync(file.fileno())
    temp.replace(out)
    ciks = sum(entry["cik"] is not None for entry in entries)
    print(f"{len(entries)} nodes exported to {out}, {ciks} with their CIK")
    return EXIT_OK


def cmd_import(config: Config, args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    try:
        blob = Path(args.input).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {args.input}: {exc.strerror}") from exc
    document = unseal(blob, passphrase)
    entries = document.get("nodes")
    if document.get("format") != VERSION or not isinstance(entries, list):
        raise BundleError("the bundle is damaged (no list of nodes)")
    nodes = [_node(entry) for entry in entries]  # every entry checked before any write
    state_dir = config.gateway.state_dir
    _check_target(config)
    keystore = open_keystore(config)
    stored = {n.sn: keystore.load(n.vendor, n.model, n.sn) for n, _cik in nodes}
    kept = [
        n.sn
        for n, cik in nodes
        if stored[n.sn] not in (None, cik) and cik is not None and not args.prefer_bundle
    ]
    taken = [(n, cik) for n, cik in nodes if n.sn not in kept]
    _store(config, keystore, [(n, cik) for n, cik in taken if cik not in (None, stored[n.sn])])
    with StateDB.in_dir(state_dir) as db:
        db.begin()
        for node, _cik in taken:
            db.save(node)
        db.commit()  # the records after their CIKs, which are on disk already
    imported = len(taken)
    print(f"{imported} nodes imported into {state_dir}")
    if kept:
        print(
            f"gatewayctl: {len(kept)} nodes kept as stored, their CIK differing from the "
            f"bundle's (--prefer-bundle takes the bundle's): {', '.join(kept)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _store(config: Config, keystore: Keystore, taken: list[tuple[Node, Secret | None]]) -> None:
    """The bundle's CIKs the keystore lacks, written and made durable together (one flush of
    the file system), then put in place."""
    staged = [
        (node.sn, keystore.stage(node.vendor, node.model, node.sn, cik))
        for node, cik in taken
        if cik is not None
    ]
    folders = [config.gateway.state_dir] + ([keystore.folder] if keystore.folder else [])
    volumes = Volumes(folders)
    try:
        volumes.sync()
    finally:
        volumes.close()
    for sn, entry in staged:
        if entry is not None:
            keystore.place(entry, sn)


def _check_target(config: Config) -> None:
    """An import writes to the state folder: gatewayd stopped, and run as its owner."""
    state_dir = config.gateway.state_dir
    try:
        control.call(config.gateway.control_socket, "status", timeout=5.0)
    except (control.ControlError, OSError):
        pass
    else:
        raise BundleError("gatewayd is running: stop it first (systemctl stop gatewayd)")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = state_dir.stat().st_uid
    if owner != os.geteuid():
        raise BundleError(
            f"{state_dir} is not this user's: run the import as its owner "
            "(sudo -u gatewayd gatewayctl import ...), so that gatewayd can read what it writes"
        )
