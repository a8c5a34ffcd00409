"""The gatewayctl commands that ask Exosite: ``sn-status`` and ``reenable`` call its vendor
management API with the vendor token; ``check`` asks whether it accepts a node's stored
CIK (:mod:`gatewayd.adapters.cikcheck`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Final

from gatewayd.adapters.vendor import VendorClient
from gatewayd.config.schema import Config
from gatewayd.core.events import Verdict
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gatewayd.ctl.listing import node_of, table
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
