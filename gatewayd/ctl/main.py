"""gatewayctl: the operator's command line.

``check-config``, ``list`` and ``show`` read the configuration and the state
database directly; ``show --reveal`` also reads the keyring. ``status``,
``republish``, ``retry`` and ``forget`` ask the running daemon, over its control
socket (``gatewayd.daemon.control``), and need none of its secrets. ``sn-status`` and
``reenable`` call Exosite's vendor management API with the vendor token.
Exit codes: 0 on success, 2 for a bad configuration or usage, 1 for anything
else (a refused command included).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from gatewayd import __version__
from gatewayd.adapters.state import DB_NAME, StateDB
from gatewayd.adapters.vendor import VendorClient
from gatewayd.config.load import DEFAULT_PATH, load
from gatewayd.config.schema import Config
from gatewayd.core.errors import ConfigError, GatewaydError
from gatewayd.core.model import Node
from gatewayd.daemon import control
from gatewayd.daemon.wiring import open_keystore, vendor_client

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

_TIMES: Final = frozenset(
    {"first_seen", "next_attempt", "rejected_at", "activated_at", "request_started"}
)
_LIST_COLUMNS: Final = ("sn", "state", "model", "attempts", "reason", "first_seen", "activated_at")


def _time(value: float | None) -> str:
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
            value = None if value is None else _time(value)
        elif value is not None and not isinstance(value, bool | int | float):
            value = str(value)
        record[field.name] = value
    return record


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """An aligned plain-text table with upper-case headers."""
    cells = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
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


def _node(config: Config, sn: str) -> Node | None:
    if not (config.gateway.state_dir / DB_NAME).exists():
        return None
    with StateDB.in_dir(config.gateway.state_dir, readonly=True) as db:
        return db.get(sn)


def cmd_show(config: Config, args: argparse.Namespace) -> int:
    node = _node(config, args.sn)
    if node is None:
        print(f"gatewayctl: no node {args.sn!r} in {config.gateway.state_dir}", file=sys.stderr)
        return EXIT_FAILURE
    record = _record(node)
    if args.reveal:
        keystore = open_keystore(config)
        cik = keystore.load(node.vendor, node.model, node.sn)
        record["cik"] = None if cik is None else cik.reveal()
        body = keystore.load_unverified(node.vendor, node.model, node.sn)
        if body is not None:  # a 2xx that was no CIK, kept as it came
            record["unverified_answer"] = body.reveal()
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        width = max(len(key) for key in record)
        for key, value in record.items():
            print(f"{key.ljust(width)}  {_cell(value)}")
    return EXIT_OK


def _vendor_model(config: Config, args: argparse.Namespace) -> str:
    """The model a serial is asked about: --model, else the node's own, else the default."""
    if args.model:
        return str(args.model)
    node = _node(config, args.sn)
    return node.model if node is not None else config.exosite.model


def _vendor(config: Config) -> VendorClient | None:
    client = vendor_client(config, open_keystore(config))
    if client is None:
        print(
            "gatewayctl: no vendor token: set [exosite] vendor_token_file "
            "(or the systemd credential gatewayd-vendor-token)",
            file=sys.stderr,
        )
    return client


def cmd_sn_status(config: Config, args: argparse.Namespace) -> int:
    client = _vendor(config)
    if client is None:
        return EXIT_USAGE
    status = client.status(_vendor_model(config, args), args.sn)
    record: dict[str, object] = {"sn": status.sn, "model": status.model, "state": status.state}
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(table([record], ("sn", "model", "state")))
    return EXIT_OK


def cmd_reenable(config: Config, args: argparse.Namespace) -> int:
    client = _vendor(config)
    if client is None:
        return EXIT_USAGE
    model = _vendor_model(config, args)
    client.reenable(model, args.sn)
    if args.json:
        print(json.dumps({"sn": args.sn, "model": model, "reenabled": True}, indent=2))
        return EXIT_OK
    print(
        f"{args.sn} ({model}) re-enabled at Exosite: its next activation issues a new CIK; "
        "the node gets it at its next announce"
    )
    return EXIT_OK


def _ask(
    config: Config, command: str, args: argparse.Namespace, sn: str | None = None
) -> dict[str, object]:
    return control.call(config.gateway.control_socket, command, sn, args.timeout)


def _said(reply: dict[str, object], args: argparse.Namespace) -> int:
    """Print the daemon's reply to a command; exit 0 if it was carried out."""
    if args.json:
        print(json.dumps(reply, indent=2))
    elif reply["ok"]:
        print(reply.get("message", "done"))
    else:
        print(f"gatewayctl: {reply.get('message', 'refused')}", file=sys.stderr)
    return EXIT_OK if reply["ok"] else EXIT_FAILURE


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    reply = _ask(config, "status", args)
    if args.json or not reply["ok"]:
        return _said(reply, args)
    nodes = reply.get("nodes")
    counts = nodes if isinstance(nodes, dict) else {}
    rows: list[tuple[str, object]] = [
        ("version", reply.get("version")),
        ("uptime", f"{reply.get('uptime')} s"),
        ("broker", reply.get("broker")),
        *((f"nodes {state}", count) for state, count in counts.items()),
        ("last activation", _moment(reply.get("last_activation"))),
        ("oldest pending", _moment(reply.get("oldest_pending"))),
        ("state database", reply.get("state_database")),
        ("unreadable CIKs", ", ".join(map(str, _list(reply.get("unreadable_ciks")))) or None),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {_cell(value)}")
    return EXIT_OK


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _moment(pair: object) -> str | None:
    """``[sn, time]`` as "SN at 2026-11-27T10:00:00Z"."""
    match pair:
        case [str(sn), int(when) | float(when)]:
            return f"{sn} at {_time(when)}"
    return None


def cmd_republish(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "republish", args, args.sn), args)


def cmd_retry(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "retry", args, args.sn), args)


def cmd_forget(config: Config, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print("gatewayctl: forget asks for confirmation: add --yes", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"Forget {args.sn}? Its record and its CIK are deleted. Exosite gives a CIK only "
            "once: an activated node can be activated again only after its serial is "
            "re-enabled (gatewayctl reenable, or in Portals)."
        )
        try:
            typed = input(f"Type {args.sn} to confirm: ").strip()
        except EOFError:
            typed = ""
        if typed != args.sn:
            print("gatewayctl: not confirmed; nothing was deleted", file=sys.stderr)
            return EXIT_FAILURE
    return _said(_ask(config, "forget", args, args.sn), args)


def cmd_reload(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "reload", args), args)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= control.ANSWER_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"a number of seconds above 0, at most {control.ANSWER_TIMEOUT:g}"
        )
    return value


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"the TOML file (default {DEFAULT_PATH})",
    )
    asks = argparse.ArgumentParser(add_help=False, parents=[common])
    asks.add_argument(
        "--timeout",
        type=_seconds,
        default=control.ANSWER_TIMEOUT,
        help="seconds gatewayd has to take the command up, else it is not done "
        f"(default {control.ANSWER_TIMEOUT:g})",
    )
    top = argparse.ArgumentParser(
        prog="gatewayctl", description="Inspect gatewayd's nodes.", parents=[common]
    )
    top.add_argument("--version", action="version", version=f"gatewayctl {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    check.set_defaults(run=cmd_check_config)
    listing = sub.add_parser("list", parents=[common], help="every node and its state")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_list)
    show = sub.add_parser("show", parents=[common], help="one node in full")
    show.add_argument("sn", help="the node's serial number")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--reveal", action="store_true", help="include the CIK")
    show.set_defaults(run=cmd_show)
    status = sub.add_parser(
        "sn-status", parents=[common], help="ask Exosite about a serial (vendor API)"
    )
    status.add_argument("sn", help="the serial number")
    status.add_argument("--model", help="the model (default: the node's, else exosite.model)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=cmd_sn_status)
    reenable = sub.add_parser(
        "reenable", parents=[common], help="re-enable a serial at Exosite (vendor API)"
    )
    reenable.add_argument("sn", help="the serial number")
    reenable.add_argument("--model", help="the model (default: the node's, else exosite.model)")
    reenable.add_argument("--json", action="store_true", help="print JSON")
    reenable.set_defaults(run=cmd_reenable)
    daemon = sub.add_parser(
        "status", parents=[asks], help="the running gatewayd: broker, counts, progress"
    )
    daemon.add_argument("--json", action="store_true", help="print JSON")
    daemon.set_defaults(run=cmd_status)
    reload = sub.add_parser(
        "reload", parents=[asks], help="have the running gatewayd reload its configuration"
    )
    reload.add_argument("--json", action="store_true", help="print the reply as JSON")
    reload.set_defaults(run=cmd_reload)
    for name, run, text in (
        ("republish", cmd_republish, "publish an activated node's credentials again"),
        ("retry", cmd_retry, "clear a rejection or needs_reenable and ask Exosite now"),
        ("forget", cmd_forget, "delete a node's record and CIK (asks first)"),
    ):
        command = sub.add_parser(name, parents=[asks], help=text)
        command.add_argument("sn", help="the node's serial number")
        command.add_argument("--json", action="store_true", help="print the reply as JSON")
        if name == "forget":
            command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        command.set_defaults(run=run)
    return top


PRIVILEGED_USER: Final = "gatewayd"
"""Besides root, the one user who may see a CIK or use the vendor token."""


def privileged() -> bool:
    uid = os.geteuid()
    if uid == 0:
        return True
    try:
        return pwd.getpwuid(uid).pw_name == PRIVILEGED_USER
    except KeyError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    reveals = args.command in {"reenable", "sn-status"} or (args.command == "show" and args.reveal)
    if reveals and not privileged():
        what = "show --reveal" if args.command == "show" else args.command
        print(f"gatewayctl: {what} is for root and the {PRIVILEGED_USER} user", file=sys.stderr)
        return EXIT_FAILURE
    path: Path = getattr(args, "config", DEFAULT_PATH)
    try:
        config = load(path)
    except ConfigError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.run(config, args)
    except (GatewaydError, OSError) as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return status


if __name__ == "__main__":
    sys.exit(main())
