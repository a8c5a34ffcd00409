"""``python -m gatewayd.sim``: serve the Exosite simulator until SIGTERM or SIGINT.

Prints one line, ``listening on http://HOST:PORT``, on stdout once it serves
(so ``--port 0`` can be used and the port read back); logs go to stderr.
Exits 0 on a signal, 2 on a bad devices file, vendor token file or usage, 1 if
it cannot listen. ``--vendor-token-file`` names a file holding the vendor token
that the management calls must carry; the token is never printed or logged.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayd.core.errors import ConfigError
from gatewayd.sim.registry import Registry
from gatewayd.sim.server import Simulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = Registry(rng=random.Random(args.seed))  # noqa: S311 (faults, not secrets)
    if args.devices is not None:
        try:
            registry.load(args.devices)
        except ConfigError as exc:
            print(f"gatewayd.sim: {exc}", file=sys.stderr)
            return 2
    if args.vendor_token_file is not None:
        try:
            registry.set_vendor_token(_read_token(args.vendor_token_file))
        except (ConfigError, ValueError) as exc:
            print(f"gatewayd.sim: {args.vendor_token_file}: {exc}", file=sys.stderr)
            return 2
        log.info("management calls need the vendor token from %s", args.vendor_token_file)
    registry.latency = args.latency
    registry.error_rate = args.error_rate
    registry.drop_rate = args.drop_rate

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim = Simulator(registry, args.host, args.port, murano=args.murano)
    except OSError as exc:
        print(f"gatewayd.sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    with sim:
        print(f"listening on {sim.url}", flush=True)
        stop.wait()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gatewayd.sim",
        description="Serve a local stand-in for Exosite's provisioning API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (IPv4)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--devices", metavar="FILE", help="TOML file of [[device]] and [[pair]]")
    parser.add_argument(
        "--murano",
        metavar="VENDOR/MODEL",
        type=_pair,
        help="the pair that answers the Murano form (id=<sn>)",
    )
    parser.add_argument(
        "--vendor-token-file",
        metavar="FILE",
        help="file holding the vendor token the management API requires (not printed)",
    )
    parser.add_argument("--latency", metavar="S", type=_seconds, default=0.0)
    parser.add_argument("--error-rate", metavar="R", type=_rate, default=0.0, help="503 rate")
    parser.add_argument("--drop-rate", metavar="R", type=_rate, default=0.0)
    parser.add_argument("--seed", metavar="N", type=int, help="seed for the fault rates")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every HTTP request")
    return parser


def _read_token(path: str) -> str:
    """The file's text without surrounding white space; the error never quotes the text."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ValueError("the vendor token is not UTF-8 text (not shown)") from None
    return text.strip()


def _pair(text: str) -> tuple[str, str]:
    vendor, slash, model = text.partition("/")
    if not (vendor and slash and model) or "/" in model:
        raise argparse.ArgumentTypeError(f"expected VENDOR/MODEL, not {text!r}")
    return vendor, model


def _seconds(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, not {text!r}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, not {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
