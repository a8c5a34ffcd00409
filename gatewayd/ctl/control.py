"""The gatewayctl commands that ask the running daemon over its control socket
(:mod:`gatewayd.daemon.control`): ``status``, ``republish``, ``retry``, ``rotate``,
``forget`` and ``reload``. They need none of its secrets."""

from __future__ import annotations

import argparse
import json
import sys

from gatewayd.config.schema import Config
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gatewayd.ctl.listing import cell, moment_text
from gatewayd.daemon import control


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
        ("publishes", _publishes(reply.get("publishes"))),
        *((f"nodes {state}", count) for state, count in counts.items()),
        ("last activation", _moment(reply.get("last_activation"))),
        ("oldest pending", _moment(reply.get("oldest_pending"))),
        ("state database", reply.get("state_database")),
        ("unreadable CIKs", ", ".join(map(str, _list(reply.get("unreadable_ciks")))) or None),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {cell(value)}")
    return EXIT_OK


def _publishes(value: object) -> str | None:
    """``{"waiting": 3, "stalled_for": 75}`` as "3 waiting, unacknowledged for 75 s"."""
    match value:
        case {"waiting": int(waiting), "stalled_for": int(stalled_for)}:
            return f"{waiting} waiting, unacknowledged by the broker for {stalled_for} s"
        case {"waiting": int(waiting)}:
            return f"acknowledged ({waiting} waiting)" if waiting else "acknowledged"
    return None


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _moment(pair: object) -> str | None:
    """``[sn, time]`` as "SN at 2026-11-27T10:00:00Z"."""
    match pair:
        case [str(sn), int(when) | float(when)]:
            return f"{sn} at {moment_text(when)}"
    return None


def cmd_republish(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "republish", args, args.sn), args)


def cmd_retry(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "retry", args, args.sn), args)


def cmd_rotate(config: Config, args: argparse.Namespace) -> int:
    return _said(_ask(config, "rotate", args, args.sn), args)


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
