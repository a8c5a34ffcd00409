"""The path of one new serial's announce to its credentials, counted.

gatewayd runs with a profile hook on every thread (``hops.py --trace``). From
paho handing the announce to gatewayd until gatewayd publishes the node's
credentials, at each step the announce takes (it reaches the engine, its record
is saved, its request is submitted and sent, the answer comes back, the CIK is
stored, the credentials are published) the hook records the gatewayd
functions on the stack. The figures: how many distinct functions the path
crosses, in how many modules, on how many threads.

    python bench/hops.py            # prints the figures and the functions, in order
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
SN = "HOP-1"
PACKAGE = str(HERE.parent / "gatewayd")
SKIPPED = (f"{PACKAGE}/sim/",)
STEPS = (
    "Intake.receive",
    "Engine.handle",
    "StateDB.save",
    "ExositeClient.submit",
    "Client.request",
    "Connection.post_form",
    "Daemon._answered",
    "FileStore.set_password",
    "MqttLink.publish",
)
"""The functions whose call marks a step of the path (under either layout's names)."""


def count(trace: Path) -> dict[str, Any]:
    calls = json.loads(trace.read_text())
    functions: list[str] = []
    for _, name in calls:
        if name not in functions:
            functions.append(name)
    return {
        "functions": len(functions),
        "modules": len({name.rpartition(":")[0] for name in functions}),
        "threads": len({thread for thread, _ in calls}),
        "path": functions,
    }


def _name(frame: FrameType) -> str | None:
    path = frame.f_code.co_filename
    if not path.startswith(PACKAGE) or path.startswith(SKIPPED):
        return None
    return f"{path[len(PACKAGE) + 1 : -3]}:{frame.f_code.co_qualname}"


def _stack(frame: FrameType | None) -> list[str]:
    """The gatewayd functions on the stack, outermost first."""
    names: list[str] = []
    while frame is not None:
        name = _name(frame)
        if name is not None:
            names.append(name)
        frame = frame.f_back
    return names[::-1]


def measure() -> dict[str, Any]:
    from support import MODEL, VENDOR, WAIT, rig  # noqa: PLC0415 (not for the traced run)

    from gatewayd.sim.node import SimulatedNode  # noqa: PLC0415
    from gatewayd.sim.processes import Output, stop  # noqa: PLC0415

    with rig() as r:
        r.registry.add(VENDOR, MODEL, SN)
        trace = r.folder / "trace.json"
        command = [sys.executable, __file__, "--trace", str(trace), "--config", str(r.config())]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        output = Output("gatewayd", process.stderr, r.folder / "gatewayd.log")
        try:
            output.wait_for("subscribed to ")
            node = SimulatedNode("127.0.0.1", r.broker_port, SN)
            node.connect()
            with node:
                answer = node.activate(timeout=WAIT)
        finally:
            stop(process, output)
        if answer.get("status") != "activated":
            raise RuntimeError(f"{SN} was not activated: {answer}")
        return count(trace)


def traced(trace: Path, argv: list[str]) -> int:
    """Run gatewayd with the hook; write the calls on the path once it is done."""
    calls: list[tuple[str, str]] = []
    on = threading.Event()
    done = threading.Event()

    def hook(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call" or done.is_set():
            return
        name = _name(frame)
        if name is None or not name.endswith(STEPS):
            return
        if not on.is_set():
            message = frame.f_locals.get("event")
            if not (name.endswith("Intake.receive") and SN in str(getattr(message, "topic", ""))):
                return
            on.set()
        thread = threading.current_thread().name
        calls.extend((thread, each) for each in _stack(frame))
        topic = frame.f_locals.get("topic")
        if name.endswith("MqttLink.publish") and isinstance(topic, str) and SN in topic:
            done.set()

    threading.setprofile(hook)
    sys.setprofile(hook)
    from gatewayd.__main__ import main  # noqa: PLC0415

    try:
        return main(argv)
    finally:
        sys.setprofile(None)
        trace.write_text(json.dumps(calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.trace is not None:
        sys.exit(traced(args.trace, rest))
    figures = measure()
    print(
        f"a new serial's announce to its credentials: {figures['functions']} functions "
        f"in {figures['modules']} modules on {figures['threads']} threads"
    )
    for name in figures["path"]:
        print(f"  {name}")


if __name__ == "__main__":
    main()
