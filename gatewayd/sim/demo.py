"""``python -m gatewayd.sim.demo``: the whole path on one machine, in a few seconds.

Starts a private mosquitto, the Exosite simulator and gatewayd, lets simulated
nodes announce themselves and receive their credentials, shows that a
re-announce is answered from the keyring, then stops everything and removes
its temporary folder. Exits 0 if all of that worked, 1 with a one-line reason
if not, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Final

from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import WAIT, Broker, Output, stop
from gatewayd.sim.registry import Registry
from gatewayd.sim.server import Simulator

VENDOR: Final = "acme"
MODEL: Final = "thermo-v1"
_PRINT_LOCK: Final = threading.Lock()
_DATE: Final = re.compile(r"^\d{4}-\d\d-\d\d ")


class DemoError(Exception):
    """A step failed; the message is the one line the user sees."""


def say(text: str = "") -> None:
    with _PRINT_LOCK:
        print(text, flush=True)


def spawn(
    name: str, command: list[str], folder: Path, stack: contextlib.ExitStack, *, echo: bool
) -> tuple[subprocess.Popen[bytes], Output]:
    """Start ``command``, its stderr read into ``<name>.log``; the stack stops it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(folder / "xdg"))
    for key in ("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET"):
        env.pop(key, None)  # log to stderr, not to the journal of a surrounding unit
    process = subprocess.Popen(
        command, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, env=env, start_new_session=True
    )  # its own session: Ctrl-C reaches only the demo, which stops it in order

    def shown(line: str) -> None:  # the date adds nothing on a terminal; the log file keeps it
        say(f"  {name} | {_DATE.sub('', line, count=1)}")

    output = Output(name, process.stderr, folder / f"{name}.log", shown if echo else None)
    stack.callback(stop, process, output)
    return process, output


def start_broker(folder: Path, stack: contextlib.ExitStack) -> int:
    """A private mosquitto, stopped by the stack; its port."""
    broker = Broker(folder)
    broker.start()
    stack.callback(broker.stop)
    return broker.port


def write_config(folder: Path, sim_url: str, broker_port: int) -> Path:
    path = folder / "gatewayd.toml"
    path.write_text(
        "# Written by python -m gatewayd.sim.demo; see config.example.toml for every key.\n"
        f'[gateway]\nid = "demo"\nstate_dir = {json.dumps(str(folder / "state"))}\n'
        f"control_socket = {json.dumps(str(folder / 'control.sock'))}\n\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n\n'
        f'[exosite]\nurl = "{sim_url}"\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\n'
    )
    return path


def activate(node: SimulatedNode, log: Output) -> str:
    """Connect, announce, wait for the credentials and for gatewayd's log line; the CIK."""
    start = len(log.lines)
    node.connect(WAIT)
    body = node.activate(timeout=WAIT)
    if body.get("status") != "activated":
        raise DemoError(
            f"{node.sn}: {body.get('status')} ({body.get('reason')}): {body.get('message')}"
        )
    log.wait_for(rf"node {re.escape(node.sn)}: credentials activated", start=start)
    cik = str(body["cik"])  # shown masked: whoever holds a CIK can act as the node
    say(f"    {node.sn}  activated  cik={cik[:4]}…({len(cik)} chars)  model={body.get('model')}")
    return cik


def run(count: int, folder: Path, keep: bool, stack: contextlib.ExitStack) -> None:
    sns = [f"TH-{n:04d}" for n in range(1, count + 1)]
    say("==> Starting mosquitto, a private MQTT broker")
    port = start_broker(folder, stack)
    say(f"    listening on 127.0.0.1:{port} (anonymous, loopback only)")

    devices = folder / "devices.toml"
    entry = f'[[device]]\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\nsn = "{{}}"\n'
    devices.write_text("\n".join(entry.format(sn) for sn in sns))
    registry = Registry()
    registry.load(devices)
    sim = stack.enter_context(Simulator(registry))
    say("==> Starting the Exosite simulator")
    pending = ", ".join(sns) if count <= 4 else f"{sns[0]} to {sns[-1]}"
    say(f"    {sim.url}  {VENDOR}/{MODEL}, pending activation: {pending}")

    say("==> Starting gatewayd (its log lines follow, prefixed 'gatewayd |')")
    config = write_config(folder, sim.url, port)
    command = [sys.executable, "-m", "gatewayd", "--config", str(config)]
    daemon, log = spawn("gatewayd", command, folder, stack, echo=True)
    log.wait_for(r"subscribed to ")

    say(f"==> {count} nodes announce their serial numbers and wait for their credentials")
    nodes = [SimulatedNode("127.0.0.1", port, sn) for sn in sns]
    ciks: dict[str, str] = {}
    for node in nodes:
        stack.callback(node.close)
        ciks[node.sn] = activate(node, log)

    calls = registry.total_calls()
    first = nodes[0]
    say(f"==> {first.sn} announces again, as after a reboot")
    start = len(log.lines)
    again = first.activate(timeout=WAIT)
    log.wait_for(rf"node {re.escape(first.sn)}: credentials republished", start=start)
    if again.get("cik") != ciks[first.sn] or registry.total_calls() != calls:
        raise DemoError(f"{first.sn}: the re-announce was not answered from the keyring")
    say(f"    {first.sn}  answered from the keyring: same CIK, Exosite calls still {calls}")

    say("==> Stopping gatewayd with SIGTERM")
    code = stop(daemon, log)
    if code != 0:
        raise DemoError(f"gatewayd exited with status {code} on SIGTERM, expected 0")
    say("    gatewayd exited with status 0")
    leaked = [sn for sn, cik in registry.issued() if any(cik in line for line in log.lines)]
    if leaked:
        raise DemoError(f"the CIKs of {', '.join(leaked)} appear in gatewayd's log")
    summary(count, calls, folder, keep)


def summary(count: int, calls: int, folder: Path, keep: bool) -> None:
    kept = "kept" if keep else "removed at exit"
    say()
    say("Summary")
    say(f"  nodes activated         {count} of {count}")
    say(f"  Exosite calls           {calls} for {count} nodes; the re-announce needed none")
    say("  CIKs in gatewayd's log  none; they are in the keyring and were sent to their nodes")
    say(f"  gatewayd's state        {folder / 'state'} (SQLite database, keyring/; {kept})")
    say()
    config = folder / "gatewayd.toml"
    say("Run the pieces by hand" + ("" if keep else " (with --keep, these files stay)") + ":")
    if sys.prefix != sys.base_prefix:
        say(f"  . {Path(sys.prefix, 'bin', 'activate')}")
    say(f"  python -m gatewayd.sim --port 8080 --devices {folder / 'devices.toml'}")
    say(f"  gatewayd --config {config}")
    say("      (first point its [exosite] url at the simulator and [mqtt] port at a broker)")
    say(f"  gatewayctl --config {config} list")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatewayd.sim.demo",
        description="Run mosquitto, the Exosite simulator, gatewayd and simulated nodes "
        "together, and show each node being activated.",
    )
    parser.add_argument(
        "--nodes", type=int, default=3, metavar="N", help="how many nodes to simulate (default: 3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 9999:
        parser.error("--nodes: expected a number from 1 to 9999")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    folder = Path(tempfile.mkdtemp(prefix="gatewayd-demo-"))
    say(f"gatewayd demo: {args.nodes} sensor nodes, a broker, a simulated Exosite, and gatewayd")
    say(f"working folder: {folder}")
    say()
    try:
        with contextlib.ExitStack() as stack:
            run(args.nodes, folder, args.keep, stack)
        say()
        say("Demo finished: every node was activated and everything stopped cleanly.")
    except (DemoError, OSError, subprocess.SubprocessError) as exc:  # TimeoutError included
        say(f"demo failed: {str(exc).splitlines()[0]}")
        return 1
    except KeyboardInterrupt:
        say("demo interrupted")
        return 130
    finally:
        if args.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
