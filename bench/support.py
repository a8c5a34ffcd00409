"""What every benchmark needs: mosquitto, the simulator, gatewayd as a subprocess, and
readings of a process's memory and CPU time. Results go to bench/RESULTS.md."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gatewayd.sim import Registry, Simulator
from gatewayd.sim.demo import start_broker
from gatewayd.sim.processes import Output, stop

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.append(str(CHECKOUT / "tests"))  # the tests' helpers, tomlfile among them
import tomlfile  # noqa: E402

VENDOR = "acme"
MODEL = "thermo-v1"
WAIT = 120.0
DEBIAN_PYTHON = "/usr/bin/python3"
"""Debian's own Python, with the packages the .deb depends on: what a gateway runs."""


def separate_simulator(rig: Rig, devices: list[str], latency: float) -> str:
    """The simulator in a process of its own, as Exosite would be; its URL.

    In the benchmark's own process it would share one interpreter lock with the
    fleet of nodes, and its answers would come later than its latency says.
    """
    listing = rig.folder / "devices.toml"
    lines = [f'[[pair]]\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\n']
    lines += [
        f'[[device]]\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\nsn = "{sn}"\n' for sn in devices
    ]
    listing.write_text("\n".join(lines))
    command = [sys.executable, "-m", "gatewayd.sim", "--port", "0", "--devices", str(listing)]
    command += ["--latency", str(latency)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = Output("simulator", process.stdout, rig.folder / "simulator.log")
    rig.stack.callback(stop, process, output)
    output.wait_for(r"listening on http://")
    line = next(line for line in output.lines if "listening on http://" in line)
    return line.split("listening on ", 1)[1].strip()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_times() -> list[int]:
    """The machine's CPU time so far, by kind, in ticks (the ``cpu`` line of /proc/stat)."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def stolen(before: list[int], after: list[int]) -> float:
    """The share of CPU time the hypervisor took from this machine between two readings:
    on a shared host, the noise in every figure measured meanwhile."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return spent[7] / max(1, sum(spent))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Emulating(Protocol):
    def wrap(self, argv: list[str], env: dict[str, str]) -> list[str]: ...


@dataclass
class Gatewayd:
    process: subprocess.Popen[bytes]
    output: Output
    config: Path
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Rig:
    """A folder, a broker, the simulator; gatewayd started on demand."""

    folder: Path
    broker_port: int
    registry: Registry
    sim: Simulator
    stack: contextlib.ExitStack
    made: list[Gatewayd] = field(default_factory=list)

    def config(self, url: str | None = None, **sections: dict[str, object]) -> Path:
        base: dict[str, dict[str, object]] = {
            "gateway": {
                "id": "bench",
                "state_dir": str(self.folder / "state"),
                "control_socket": str(self.folder / "control.sock"),
            },
            "mqtt": {"host": "127.0.0.1", "port": self.broker_port},
            "exosite": {"url": url or self.sim.url, "vendor": VENDOR, "model": MODEL},
            "nodes": {},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        path = self.folder / "gatewayd.toml"
        path.write_text(tomlfile.dumps(base))
        return path

    def gatewayd(
        self,
        config: Path,
        notify: str | None = None,
        python: str = sys.executable,
        emulation: Emulating | None = None,
    ) -> Gatewayd:
        """gatewayd on ``python``; another Python than this one gets this checkout on its path.
        ``emulation`` wraps its command and adds to its environment (bench/pi.py)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for key in ("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(key, None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify
        if python != sys.executable:
            env["PYTHONPATH"] = str(CHECKOUT)
        argv = [python, "-m", "gatewayd", "--config", str(config)]
        if emulation is not None:
            argv = emulation.wrap(argv, env)
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        output = Output("gatewayd", process.stderr, self.folder / "gatewayd.log")
        self.stack.callback(stop, process, output)
        made = Gatewayd(process, output, config, started)
        self.made.append(made)
        return made


@functools.cache
def scratch() -> Path:
    """The folder every rig of this run works in, deleted only when the run ends.

    On ext4, a file created soon after thousands were deleted costs up to a
    millisecond of system time instead of tens of microseconds (freed inodes are
    checked one by one before reuse). Each storm writes a file per CIK: deleting a
    round's folder right after it would slow the next round's file creation, in
    gatewayd and the baseline alike but not equally, and swing their ratio from
    0.73 to 1.44 for the same code (bench/cpu.py measures it)."""
    base = Path(tempfile.mkdtemp(prefix="gwbench-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return base


@contextlib.contextmanager
def rig(latency: float = 0.0) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="rig-", dir=scratch()))
        port = start_broker(folder, stack)
        registry = Registry()
        registry.add_pair(VENDOR, MODEL)
        registry.latency = latency
        sim = stack.enter_context(Simulator(registry))
        yield Rig(folder, port, registry, sim, stack)


class NotifySocket:
    """A NOTIFY_SOCKET the benchmark listens on, as systemd would."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(WAIT)

    def wait_for(self, wanted: str) -> float:
        """The monotonic time the first message holding ``wanted`` arrived."""
        while True:
            message = self.sock.recv(4096).decode()
            if wanted in message.splitlines():
                return time.monotonic()


class Counter:
    """A thread-safe count with a condition to wait on."""

    def __init__(self) -> None:
        self.value = 0
        self._cond = threading.Condition()

    def add(self) -> None:
        with self._cond:
            self.value += 1
            self._cond.notify_all()

    def wait_for(self, target: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.value >= target, timeout)
