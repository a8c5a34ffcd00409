"""Start-up and footprint: process start to READY=1 with 10,000 nodes stored, resident
memory once idle, and CPU time used over a minute of idling with the broker connected.

Start-up is timed over several starts (the median is the figure), each a new process
on the same state: one start on a machine that is busy for a moment tells little.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from store import KEY, fill
from support import DEBIAN_PYTHON, NotifySocket, Rig, cpu_seconds, rig, rss_mib

IDLE_SECONDS = 60.0
STARTS = 7


def settle(pid: int, step: float = 0.5, most: float = 10.0) -> None:
    """Wait until the process has used no CPU for ``step`` seconds (its start's tail: the
    first status, the answer to its subscription), ``most`` seconds at the most."""
    deadline = time.monotonic() + most
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def stored_config(r: Rig, stored: int) -> Path:
    """A configuration whose state holds ``stored`` activated nodes, their CIKs sealed."""
    state = r.folder / "state"
    state.mkdir(mode=0o700)
    _store, db = fill(state, stored)
    db.close()
    key_file = r.folder / "keyring.key"
    key_file.write_text(KEY.hex())
    return r.config(gateway={"state_dir": str(state)}, keyring={"key_file": str(key_file)})


def python_start(python: str) -> float:
    """A Python, starting and doing nothing: the floor of any start-up."""
    started = time.monotonic()
    subprocess.run([python, "-c", "pass"], check=True)
    return time.monotonic() - started


def run(
    stored: int = 10_000, idle: float = IDLE_SECONDS, starts: int = STARTS, python: str = ""
) -> dict[str, Any]:
    """The figures for gatewayd on ``python`` (default: this Python)."""
    python = python or sys.executable
    with rig() as r:
        config = stored_config(r, stored)
        notify = NotifySocket(r.folder)
        readies = []
        for _ in range(starts - 1):
            gw = r.gatewayd(config, notify=notify.path, python=python)
            readies.append(notify.wait_for("READY=1") - gw.started)
            gw.process.terminate()
            gw.process.wait(60)
        gw = r.gatewayd(config, notify=notify.path, python=python)
        readies.append(notify.wait_for("READY=1") - gw.started)
        gw.output.wait_for("subscribed to ")
        settle(gw.pid)
        rss_idle = rss_mib(gw.pid)
        before = cpu_seconds(gw.pid)
        time.sleep(idle)  # the measurement itself: a minute of nothing to do
        cpu = cpu_seconds(gw.pid) - before
        gw.process.terminate()
        gw.process.wait(60)
    return {
        "stored": stored,
        "ready_s": statistics.median(readies),
        "ready_all_s": readies,
        "python_start_s": python_start(python),
        "rss_idle_mib": rss_idle,
        "idle_s": idle,
        "idle_cpu_s": cpu,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))


def debian_python_ready() -> bool:
    """Whether Debian's python3 has what the .deb depends on (make bench installs it)."""
    check = "import cryptography, keyring, paho.mqtt.client, requests, systemd"
    try:
        subprocess.run([DEBIAN_PYTHON, "-c", check], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True
