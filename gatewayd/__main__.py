"""``gatewayd`` and ``python -m gatewayd``: read the configuration and run the daemon.

SIGHUP is blocked first thing, before anything else is imported: a reload asked
for while the daemon starts waits until its handler is in place (the daemon
unblocks it then) instead of killing the process, SIGHUP's default.
"""

from __future__ import annotations

import signal

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

import argparse  # noqa: E402 (after SIGHUP is blocked, see above)
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from gatewayd import __version__  # noqa: E402
from gatewayd.adapters import coredumps, logs  # noqa: E402
from gatewayd.config.load import DEFAULT_PATH, load  # noqa: E402
from gatewayd.core.errors import ConfigError, GatewaydError  # noqa: E402
from gatewayd.daemon import preflight  # noqa: E402
from gatewayd.daemon.loop import Daemon  # noqa: E402

log = logging.getLogger("gatewayd")  # not __name__: under python -m gatewayd, that is __main__


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gatewayd", description="Activate sensor nodes with Exosite over MQTT."
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="the TOML file")
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.gateway.log_level)
    if not coredumps.no_core_dumps():
        log.warning("cannot turn core dumps off (prctl): a core file could hold CIKs")
    try:  # before anything opens the state or the keystore; held until the process ends
        lock = preflight.lock_state(config.gateway.state_dir)
    except GatewaydError as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400 (the message is the whole story)
        return 1
    with lock:
        try:
            daemon = Daemon(config)
        except ConfigError as exc:
            log.error("%s", exc)  # noqa: TRY400 (a bad setting, not a bug: no traceback)
            return 2
        except GatewaydError as exc:
            log.error("cannot start: %s", exc)  # noqa: TRY400
            return 1
        return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
