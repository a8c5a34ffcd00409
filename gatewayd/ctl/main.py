"""gatewayctl: the operator's command line.

``check-config``, ``list`` and ``show`` read the configuration and the state
database directly; ``show --reveal`` also reads the keyring (``gatewayd.ctl.listing``).
``status``, ``republish``, ``retry``, ``rotate``, ``forget`` and ``reload`` ask the
running daemon, over its control socket, and need none of its secrets
(``gatewayd.ctl.control``). ``sn-status`` and ``reenable`` call Exosite's vendor
management API with the vendor token; ``check`` asks Exosite whether it accepts a
node's CIK (``gatewayd.ctl.exosite``). ``export`` and ``import`` move every record and
CIK to another gateway, sealed with a passphrase (``gatewayd.ctl.bundle``); an
``import`` that writes the state folder itself holds its lock (``gatewayd.ctl.offline``).

Exit codes: 0 on success, 2 for a bad configuration or usage, 1 for anything
else (a refused command included).
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Final

from gatewayd import __version__
from gatewayd.config.load import DEFAULT_PATH, load
from gatewayd.core.errors import ConfigError, GatewaydError
from gatewayd.ctl import bundle, control, exosite, listing, offline
from gatewayd.ctl.exits import EXIT_FAILURE, EXIT_USAGE
from gatewayd.daemon.control import ANSWER_TIMEOUT


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= ANSWER_TIMEOUT:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, at most {ANSWER_TIMEOUT:g}")
    return value


def _bundle_commands(sub: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401
    """``export`` and ``import``."""
    export = sub.add_parser(
        "export", parents=[common], help="every node record and CIK, sealed with a passphrase"
    )
    export.add_argument("output", type=Path, help="the bundle to write")
    export.add_argument("--passphrase-file", type=Path, required=True, help="the passphrase")
    export.set_defaults(run=bundle.cmd_export)
    importing = sub.add_parser("import", parents=[common], help="read a bundle into this gateway")
    importing.add_argument("input", type=Path, help="the bundle to read")
    importing.add_argument("--passphrase-file", type=Path, required=True, help="the passphrase")
    importing.add_argument(
        "--prefer-bundle",
        action="store_true",
        help="replace a stored CIK that differs from the bundle's",
    )
    importing.set_defaults(run=bundle.cmd_import)


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
        default=ANSWER_TIMEOUT,
        help="seconds gatewayd has to take the command up, else it is not done "
        f"(default {ANSWER_TIMEOUT:g})",
    )
    top = argparse.ArgumentParser(
        prog="gatewayctl", description="Inspect gatewayd's nodes.", parents=[common]
    )
    top.add_argument("--version", action="version", version=f"gatewayctl {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    check.set_defaults(run=listing.cmd_check_config)
    listed = sub.add_parser("list", parents=[common], help="every node and its state")
    listed.add_argument("--json", action="store_true", help="print JSON")
    listed.set_defaults(run=listing.cmd_list)
    show = sub.add_parser("show", parents=[common], help="one node in full")
    show.add_argument("sn", help="the node's serial number")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--reveal", action="store_true", help="include the CIK")
    show.set_defaults(run=listing.cmd_show)
    status = sub.add_parser(
        "sn-status", parents=[common], help="ask Exosite about a serial (vendor API)"
    )
    status.add_argument("sn", help="the serial number")
    status.add_argument("--model", help="the model (default: the node's, else exosite.model)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=exosite.cmd_sn_status)
    _bundle_commands(sub, common)
    checking = sub.add_parser(
        "check", parents=[common], help="ask Exosite whether it accepts a node's CIK"
    )
    checking.add_argument("sn", help="the serial number")
    checking.add_argument("--json", action="store_true", help="print JSON")
    checking.set_defaults(run=exosite.cmd_check)
    reenable = sub.add_parser(
        "reenable", parents=[common], help="re-enable a serial at Exosite (vendor API)"
    )
    reenable.add_argument("sn", help="the serial number")
    reenable.add_argument("--model", help="the model (default: the node's, else exosite.model)")
    reenable.add_argument("--json", action="store_true", help="print JSON")
    reenable.set_defaults(run=exosite.cmd_reenable)
    daemon = sub.add_parser(
        "status", parents=[asks], help="the running gatewayd: broker, counts, progress"
    )
    daemon.add_argument("--json", action="store_true", help="print JSON")
    daemon.set_defaults(run=control.cmd_status)
    reload = sub.add_parser(
        "reload", parents=[asks], help="have the running gatewayd reload its configuration"
    )
    reload.add_argument("--json", action="store_true", help="print the reply as JSON")
    reload.set_defaults(run=control.cmd_reload)
    for name, run, text in (
        ("republish", control.cmd_republish, "publish an activated node's credentials again"),
        ("retry", control.cmd_retry, "clear a rejection or needs_reenable and ask Exosite now"),
        ("forget", control.cmd_forget, "delete a node's record and CIK (asks first)"),
        ("rotate", control.cmd_rotate, "give a node a new CIK: re-enable, activate, publish"),
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
    secret = {"reenable", "sn-status", "check", "export", "import"}
    reveals = args.command in secret or (args.command == "show" and args.reveal)
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
    lock = offline.writing(config, args) if args.command in offline.WRITERS else nullcontext()
    try:
        with lock:
            status: int = args.run(config, args)
    except (GatewaydError, OSError) as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return status


if __name__ == "__main__":
    sys.exit(main())
