"""``gatewayctl export`` and ``import``: every node record and CIK of a gateway in one file,
sealed with a passphrase (:mod:`gatewayd.ctl.sealing`), to move them to new hardware or
keep them safe.

While gatewayd runs, an import hands the entries to it over the control socket
(:mod:`gatewayd.daemon.importing`): gatewayctl opens the bundle, and the passphrase
never reaches the daemon. While it is stopped, the import writes to the gateway's
state folder itself, so it runs as the folder's owner (``sudo -u gatewayd gatewayctl
import ...``). Either way, what becomes of each entry (imported, already held, kept as
stored, refused) is decided by the same engine (:mod:`gatewayd.daemon.importing`), and
gatewayctl prints how many of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Final

from gatewayd.adapters.statedb import StateDB
from gatewayd.config.schema import Config
from gatewayd.core import imports
from gatewayd.core.entries import EntryError, entry, node_of, retired_of
from gatewayd.core.imports import Answer
from gatewayd.ctl import offline
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK
from gatewayd.ctl.sealing import VERSION, BundleError, read_passphrase, seal, unseal
from gatewayd.daemon import control, importing
from gatewayd.daemon.wiring import open_keystore


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    keystore = open_keystore(config)
    with StateDB.in_dir(config.gateway.state_dir, readonly=True) as db:
        nodes = db.all()
    entries = [
        entry(
            node,
            keystore.load(node.vendor, node.model, node.sn),
            keystore.retired(node.vendor, node.model, node.sn),
        )
        for node in nodes
    ]
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
    ciks = sum(made["cik"] is not None for made in entries)
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
    try:  # every entry checked before any write
        for made in entries:
            node_of(made)
            retired_of(made)
    except EntryError as exc:
        raise BundleError(f"the bundle is damaged ({exc})") from None
    if _running(config):
        return _import_live(config, entries, prefer_bundle=args.prefer_bundle)
    offline.hold(config, args)  # no gatewayd starts while this writes (or this is refused)
    return _import_stopped(config, entries, prefer_bundle=args.prefer_bundle)


def _import_stopped(config: Config, entries: list[Any], *, prefer_bundle: bool) -> int:
    """Write the bundle's records and CIKs into the state folder of a stopped gatewayd, by
    the engine and executor gatewayd runs (:func:`gatewayd.daemon.importing.stopped`)."""
    _check_target(config)
    tally = importing.stopped(config, entries, prefer_bundle=prefer_bundle)
    print(imports.counted(tally.counts, str(config.gateway.state_dir)))
    for problem in tally.problems:
        print(f"gatewayctl: {problem}", file=sys.stderr)
    return EXIT_FAILURE if tally.problems else EXIT_OK


def _running(config: Config) -> bool:
    """Whether gatewayd answers on its control socket."""
    try:
        control.call(config.gateway.control_socket, "status", timeout=5.0)
    except control.NotRunningError:
        return False
    return True


PART: Final = 256 * 1024
"""The most of a bundle's entries sent to a running gatewayd in one request, in bytes."""


def _import_live(config: Config, entries: list[Any], *, prefer_bundle: bool) -> int:
    """Hand the bundle's entries to the running gatewayd, a part at a time; each part is
    answered once what it stored is durable."""
    counts = dict.fromkeys(Answer, 0)
    problems: list[str] = []
    try:
        for part in _parts(entries):
            reply = control.call(
                config.gateway.control_socket,
                "import",
                timeout=control.ANSWER_TIMEOUT,
                entries=part,
                prefer_bundle=prefer_bundle,
            )
            listed = reply.get("problems")
            if not isinstance(listed, list):  # the whole part refused
                raise BundleError(f"gatewayd refused the import: {reply.get('message')}")
            for answer in Answer:
                counts[answer] += _count(reply.get(answer.value))
            problems += [str(p) for p in listed]
    finally:
        print(imports.counted(counts, "the running gatewayd"))
        for problem in problems:
            print(f"gatewayctl: {problem}", file=sys.stderr)
    return EXIT_FAILURE if problems else EXIT_OK


def _parts(entries: list[Any]) -> list[list[Any]]:
    """``entries`` in parts of at most PART bytes of JSON each (one entry at least)."""
    parts: list[list[Any]] = [[]]
    size = 0
    for made in entries:
        length = len(json.dumps(made, separators=(",", ":"))) + 1
        if parts[-1] and size + length > PART:
            parts.append([])
            size = 0
        parts[-1].append(made)
        size += length
    return [part for part in parts if part]


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_target(config: Config) -> None:
    """An import writes to the state folder: run as its owner."""
    state_dir = config.gateway.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = state_dir.stat().st_uid
    if owner != os.geteuid():
        raise BundleError(
            f"{state_dir} is not this user's: run the import as its owner "
            "(sudo -u gatewayd gatewayctl import ...), so that gatewayd can read what it writes"
        )
