"""Helpers of the crash-point tests: strace attached to a running gatewayd, injecting a fault.

``strace -f -p PID -e inject=SYSCALL:signal=KILL:when=N`` (or ``error=EIO``)
fails the N-th call of SYSCALL in each of gatewayd's threads; a baseline run,
traced without a fault, counts how many such calls one activation makes, which
is how far N goes. strace injects only into calls it traces (``-o FILE``).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

from conftest import WAIT

from gatewayd.adapters.statedb import StateDB
from gatewayd.core.model import State
from gatewayd.sim import Request, Response, Route, Simulator

SYSCALLS = ("write", "pwrite64", "fsync", "fdatasync", "syncfs", "rename", "sendto", "connect")
"""The calls along an activation whose failure could lose a CIK or send a request early
(``syncfs`` is the writer's flush of a batch)."""
_CALL = re.compile(r"^(\d+)\s+(\w+)\(")


class Tracer:
    """strace attached to every thread of ``pid``, until the process ends or it is closed."""

    def __init__(self, pid: int, log: Path, trace: str, inject: str | None = None) -> None:
        argv = ["strace", "-f", "-p", str(pid), "-o", str(log), "-e", f"trace={trace}"]
        if inject is not None:
            argv += ["-e", f"inject={inject}"]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._attached = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._attached.wait(WAIT):  # "strace: Process N attached with K threads"
            self.close()
            raise TimeoutError(f"strace did not attach to {pid}")

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            if b" attached" in line:
                self._attached.set()

    def close(self) -> None:
        """Detach (the tracee goes on), or wait for strace once the tracee is gone."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(WAIT)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(WAIT)
        self._reader.join(WAIT)  # at the end of strace's output: its pipe is closed only then
        if self._process.stderr is not None:
            self._process.stderr.close()


@contextlib.contextmanager
def traced(pid: int, log: Path, trace: str, inject: str | None = None) -> Iterator[Tracer]:
    tracer = Tracer(pid, log, trace, inject)
    try:
        yield tracer
    finally:
        tracer.close()


def calls_per_thread(log: Path) -> dict[str, int]:
    """The most calls of each syscall that one thread made, from an ``strace -f -o`` log."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in log.read_text().splitlines():
        match = _CALL.match(line)
        if match:
            counts[match.group(1), match.group(2)] += 1
    most: dict[str, int] = {}
    for (_, name), count in counts.items():
        most[name] = max(most.get(name, 0), count)
    return most


class WriteAheadProbe:
    """Checks, as each activation request arrives at the simulator, that the gateway's
    state database already holds the node's record saying a request is under way."""

    def __init__(self, sim: Simulator) -> None:
        self.state_dirs: dict[str, Path] = {}
        """Where each serial's gateway keeps its state."""
        self.violations: list[str] = []
        self.checked = 0
        route = sim.routes[0]
        self._activate = route.endpoint
        sim.routes = (Route(route.method, route.pattern, self._probe), *sim.routes[1:])

    def _probe(self, request: Request) -> Response:
        form = parse_qs(request.body.decode("ascii", "replace"))
        sn = form.get("sn", [""])[0]
        state_dir = self.state_dirs.get(sn)
        if state_dir is not None:
            self.checked += 1
            with StateDB.in_dir(state_dir, readonly=True) as db:
                record = db.get(sn)
            if record is None or record.state is not State.ACTIVATING:
                self.violations.append(f"{sn}: {record.state if record else 'no record'}")
        return self._activate(request)
