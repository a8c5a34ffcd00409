"""The gatewayctl commands that ask someone: ``status``, ``republish``, ``retry``,
``forget`` and ``reload`` ask the running daemon over its control socket
(:mod:`gatewayd.daemon.control`) and need none of its secrets; ``sn-status`` and
``reenable`` call Exosite's vendor management API with the vendor token; ``check``
asks Exosite whether it accepts a node's stored CIK."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Final

from gatewayd.adapters.vendor import VendorClient
from gatewayd.config.schema import Config
from gatewayd.core.events import Verdict
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gatewayd.ctl.state import cell, moment_text, node_of, table
from gatewayd.daemon import control
from gatewayd.daemon.wiring import open_keystore, vendor_client


def _vendor_model(config: Config, args: argparse.Namespace) -> str:
    """The model a serial is asked about: --model, else the node's own, else the default."""
    if args.model:
        return str(args.model)
    node = node_of(config, args.sn)
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


_CHECKED: Final = {
    Verdict.ACCEPTED: "Exosite accepts its CIK",
    Verdict.REFUSED: "Exosite refuses its CIK: the device was re-enabled or its CIK regenerated",
    Verdict.UNKNOWN: "no verdict: nothing is decided; try again later",
}


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    """Check the node's stored CIK with Exosite; exit 0 only if Exosite accepts it."""
    node = node_of(config, args.sn)
    if node is None:
        print(f"gatewayctl: {args.sn}: no such node", file=sys.stderr)
        return EXIT_FAILURE
    keystore = open_keystore(config)
    cik = keystore.load(node.vendor, node.model, node.sn)
    if cik is None:
        print(f"gatewayctl: {args.sn}: no CIK is stored for it", file=sys.stderr)
        return EXIT_FAILURE
    from gatewayd.adapters import cikcheck, http  # noqa: PLC0415 (requests, only here)

    vendor = vendor_client(config, keystore)  # with a token, it confirms a refusal
    client = http.Client(config.exosite.ca_file)
    try:
        verdict, said = cikcheck.check(
            client, config.exosite, cik, sn=node.sn, model=node.model, vendor=vendor
        )
    finally:
        client.close()
    if args.json:
        record = {"sn": node.sn, "model": node.model, "verdict": str(verdict), "answer": said}
        print(json.dumps(record, indent=2))
    else:
        print(f"{node.sn}: {_CHECKED[verdict]} ({said})")
    return EXIT_OK if verdict is Verdict.ACCEPTED else EXIT_FAILURE


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
