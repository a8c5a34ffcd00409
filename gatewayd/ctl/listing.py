"""``gatewayctl check-config``, ``list`` and ``show``: the configuration and the state
database, read directly (``show`` also reads the keyring: the node's retired CIKs, when
and why, and with ``--reveal`` its CIK and theirs)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Final

from gatewayd.adapters.keystore import Keystore
from gatewayd.adapters.statedb import DB_NAME, StateDB
from gatewayd.config.schema import Config
from gatewayd.core.errors import KeystoreError
from gatewayd.core.model import Node
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK
from gatewayd.daemon.wiring import open_keystore

_TIMES: Final = frozenset(
    {"first_seen", "next_attempt", "rejected_at", "activated_at", "request_started"}
)
_LIST_COLUMNS: Final = ("sn", "state", "model", "attempts", "reason", "first_seen", "activated_at")


def moment_text(value: float | None) -> str:
    if value is None:
        return "-"
    moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _record(node: Node) -> dict[str, object]:
    """A node as JSON-ready data: enums as strings, times as ISO 8601 UTC."""
    record: dict[str, object] = {}
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if field.name in _TIMES:
            value = None if value is None else moment_text(value)
        elif value is not None and not isinstance(value, bool | int | float):
            value = str(value)
        record[field.name] = value
    return record


def cell(value: object) -> str:
    return "-" if value is None else str(value)


def table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """An aligned plain-text table with upper-case headers."""
    cells = [[c.upper() for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _nodes(config: Config) -> list[Node]:
    if not (config.gateway.state_dir / DB_NAME).exists():
        return []
    with StateDB.in_dir(config.gateway.state_dir, readonly=True) as db:
        return db.all()


def cmd_check_config(_config: Config, _args: argparse.Namespace) -> int:
    print("ok")
    return EXIT_OK


def cmd_list(config: Config, args: argparse.Namespace) -> int:
    records = [_record(node) for node in _nodes(config)]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(table(records, _LIST_COLUMNS))
    return EXIT_OK


def node_of(config: Config, sn: str) -> Node | None:
    if not (config.gateway.state_dir / DB_NAME).exists():
        return None
    with StateDB.in_dir(config.gateway.state_dir, readonly=True) as db:
        return db.get(sn)


def cmd_show(config: Config, args: argparse.Namespace) -> int:
    node = node_of(config, args.sn)
    if node is None:
        print(f"gatewayctl: no node {args.sn!r} in {config.gateway.state_dir}", file=sys.stderr)
        return EXIT_FAILURE
    record = _record(node)
    retired: list[dict[str, str]] | None = None
    try:
        keystore = open_keystore(config)
        retired = _retired(keystore, node, reveal=args.reveal)
    except KeystoreError as exc:
        if args.reveal:
            raise
        print(f"gatewayctl: its retired CIKs cannot be read: {exc}", file=sys.stderr)
    record["retired"] = retired
    if args.reveal:
        cik = keystore.load(node.vendor, node.model, node.sn)
        record["cik"] = None if cik is None else cik.reveal()
        body = keystore.load_unverified(node.vendor, node.model, node.sn)
        if body is not None:  # a 2xx that was no CIK, kept as it came
            record["unverified_answer"] = body.reveal()
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    width = max(len(key) for key in record)
    for key, value in record.items():
        if key != "retired" or retired is None:
            print(f"{key.ljust(width)}  {cell(value)}")
            continue
        print(f"{key.ljust(width)}  {len(retired)}")
        for one in retired:  # when, why (and with --reveal the CIK), under the count
            print(" " * (width + 2) + "  ".join(one.values()))
    return EXIT_OK


def _retired(keystore: Keystore, node: Node, *, reveal: bool) -> list[dict[str, str]]:
    """The node's retired CIKs, oldest first: when (ISO 8601 UTC, ``-`` if not recorded)
    and why; the CIKs themselves only with ``reveal``."""
    retired = keystore.retired(node.vendor, node.model, node.sn)
    shown = [{"at": moment_text(one.at), "why": one.why} for one in retired]
    if reveal:
        for made, one in zip(shown, retired, strict=True):
            made["cik"] = one.cik.reveal()
    return shown
