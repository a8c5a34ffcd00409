"""``gatewayctl export`` and ``import``: every node record and CIK of a gateway in one file,
sealed with a passphrase (:mod:`gatewayd.ctl.sealing`), to move them to new hardware or
keep them safe.

While gatewayd runs, an import hands the entries to it over the control socket
(:mod:`gatewayd.daemon.importing`): gatewayctl opens the bundle, and the passphrase
never reaches the daemon. While it is stopped, the import writes to the gateway's
state folder itself, so it runs as the folder's owner (``sudo -u gatewayd gatewayctl
import ...``). Either way, what becomes of each entry (imported, already held, kept as
stored, refused) is decided by the same rules (:func:`gatewayd.core.imports.decide`),
and gatewayctl prints how many of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Final

from gatewayd.adapters import logs
from gatewayd.adapters.disk import Volumes
from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.state import StateDB
from gatewayd.config.schema import Config
from gatewayd.core import imports
from gatewayd.core.actions import Log
from gatewayd.core.entries import EntryError, entry, node_of, retired_of
from gatewayd.core.errors import KeystoreError
from gatewayd.core.events import Imported
from gatewayd.core.imports import Answer
from gatewayd.core.model import Node
from gatewayd.core.retired import REPLACED, Retired, retired_ciks
from gatewayd.core.secret import Secret
from gatewayd.ctl import offline
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK
from gatewayd.ctl.sealing import VERSION, BundleError, read_passphrase, seal, unseal
from gatewayd.daemon import control
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
        nodes = [(*node_of(made), retired_of(made)) for made in entries]
    except EntryError as exc:
        raise BundleError(f"the bundle is damaged ({exc})") from None
    if _running(config):
        return _import_live(config, entries, prefer_bundle=args.prefer_bundle)
    offline.hold(config, args)  # no gatewayd starts while this writes (or this is refused)
    return _import_stopped(config, nodes, prefer_bundle=args.prefer_bundle)


Entry = tuple[Node, Secret | None, tuple[Retired, ...]]
"""A bundle's entry: the node's record, its CIK, and its CIKs retired before."""


def _import_stopped(config: Config, nodes: list[Entry], *, prefer_bundle: bool) -> int:
    """Write the bundle's records and CIKs into the state folder of a stopped gatewayd,
    each entry decided on by the rules the running gatewayd follows (:func:`imports.decide`)."""
    state_dir = config.gateway.state_dir
    _check_target(config)
    keystore = open_keystore(config)
    counts = dict.fromkeys(Answer, 0)
    left: list[str] = []
    taken: list[tuple[Node, Secret | None]] = []
    with StateDB.in_dir(state_dir) as db:
        chosen: list[tuple[Answer, Imported, Node, tuple[Retired, ...]]] = []
        """The entries to take or leave as they are, each with the record held here."""
        imported: set[str] = set()
        for node, cik, retired in nodes:  # every stored and retired CIK read before any write
            sn = node.sn
            current = db.get(sn)
            held = current or node
            stored = keystore.load(held.vendor, held.model, sn)
            here = retired_ciks(keystore.retired(held.vendor, held.model, sn))
            event = Imported(node, cik, stored, prefer_bundle, here)
            under_way = imports.left_under_way(current, auto_reenable=config.exosite.auto_reenable)
            decision = imports.decide(event, current, under_way=under_way)
            if sn in imported and decision.answer is not Answer.REFUSED:
                decision = imports.Decision(ok=False, message=f"{sn}: {_TWICE}")
            if decision.answer in {Answer.IMPORTED, Answer.UNCHANGED}:
                chosen.append((decision.answer, event, held, retired))
                if decision.answer is Answer.IMPORTED:
                    imported.add(sn)
            else:
                counts[decision.answer] += 1
                left.append(decision.message)
        for answer, event, held, retired in chosen:
            problem = _retire(keystore, held, retired, replaces=imports.replaces(event))
            if problem is not None:
                counts[Answer.REFUSED] += 1
                left.append(problem)
                continue
            counts[answer] += 1
            if answer is Answer.IMPORTED:  # the CIK, unless it is stored already
                taken.append((event.node, None if event.cik == event.stored else event.cik))
        _store(config, keystore, taken)
        db.begin()
        for node, _cik in taken:
            db.save(node)
        db.commit()  # the records after their CIKs, which are on disk already
    said = "imported from a bundle by gatewayctl, gatewayd stopped"
    logs.to_journal(
        (Log("imported", logging.INFO, said, node.sn, node.state) for node, _cik in taken),
        "gatewayctl",
    )
    print(_counted(counts, str(state_dir)))
    for problem in left:
        print(f"gatewayctl: {problem}", file=sys.stderr)
    return EXIT_FAILURE if left else EXIT_OK


_TWICE: Final = "not imported: an earlier entry of the bundle for it is imported"
"""The answer for a second entry of a serial whose first is taken."""


def _counted(counts: dict[Answer, int], where: str) -> str:
    """What became of a bundle's entries, as both imports print it."""
    return (
        f"{counts[Answer.IMPORTED]} nodes imported into {where}, "
        f"{counts[Answer.UNCHANGED]} already held, {counts[Answer.KEPT]} kept as stored, "
        f"{counts[Answer.REFUSED]} refused"
    )


def _retire(
    keystore: Keystore, node: Node, retired: tuple[Retired, ...], *, replaces: bool
) -> str | None:
    """Keep the entry's retired CIKs with the gateway's, then retire the stored CIK the
    entry replaces (each on disk before its CIK is replaced); ``node``: the record held
    here for the serial (else the entry's). The problem, if they cannot be."""
    vendor, model, sn = node.vendor, node.model, node.sn
    try:
        keystore.add_retired(vendor, model, sn, retired)
    except KeystoreError as exc:
        return f"{sn}: {imports.UNKEPT}: {exc}"
    try:
        if replaces:
            keystore.retire(vendor, model, sn, why=REPLACED)
    except KeystoreError as exc:
        return f"{sn}: {imports.UNRETIRED}: {exc}"
    return None


def _store(config: Config, keystore: Keystore, taken: list[tuple[Node, Secret | None]]) -> None:
    """The CIKs of ``taken`` (None where the keystore holds the bundle's already), written
    and made durable together (one flush of the file system), then put in place."""
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
    for sn, staging in staged:
        if staging is not None:
            keystore.place(staging, sn)


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
        print(_counted(counts, "the running gatewayd"))
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
