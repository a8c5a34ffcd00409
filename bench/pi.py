"""A Raspberry Pi, emulated: an SD card's slow flush and a slow core.

The flush: bench/slowsync.c, built here with the machine's C compiler and preloaded
into gatewayd (``LD_PRELOAD``), delays every ``fsync``, ``fdatasync`` and
``syncfs`` by ``SLOWSYNC_MS``. The core: gatewayd runs in a cgroup (v1 ``cpu``
controller) whose quota is a share of one core, granted every
:data:`PERIOD_US` microseconds: a short period spreads the share evenly, as a
slower core would, instead of throttling the process for most of 100 ms.

Measured here: the boot storm under (a) the slow flush, (b) the slow core, (c) both;
and the start to READY=1 with 10,000 nodes stored under (c).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storm
from footprint import stored_config
from support import NotifySocket, rig

HERE = Path(__file__).resolve().parent
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000
SYNC_MS = 10.0
CPU_SHARE = 0.25
SYNC_NAME = f"fsync +{SYNC_MS:g} ms"
BOTH_NAME = f"fsync +{SYNC_MS:g} ms and {CPU_SHARE:.0%} of a core"


@dataclass(frozen=True)
class Emulation:
    """How gatewayd is started: the command's prefix and its environment's additions."""

    name: str
    sync_ms: float = 0.0
    cpu_share: float = 0.0
    shim: Path | None = None
    cgroup: Path | None = None

    def wrap(self, argv: list[str], env: dict[str, str]) -> list[str]:
        if self.shim is not None:
            env["LD_PRELOAD"] = str(self.shim)
            env["SLOWSYNC_MS"] = f"{self.sync_ms:g}"
        if self.cgroup is not None:
            # the shell joins the cgroup, then becomes gatewayd: every thread starts in it
            procs = self.cgroup / "cgroup.procs"
            return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]
        return argv


def build_shim(folder: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build bench/slowsync.c")
    shim = folder / "slowsync.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(shim), str(HERE / "slowsync.c"), "-ldl"],
        check=True,
    )
    return shim


@contextlib.contextmanager
def cpu_quota(share: float) -> Iterator[Path]:
    """A cgroup whose processes together get ``share`` of one core."""
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        raise RuntimeError(f"no cgroup v1 cpu controller at {CGROUP_CPU}")
    group = CGROUP_CPU / f"gwbench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(PERIOD_US * share)))
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (CGROUP_CPU / "cgroup.procs").write_text(pid)
        group.rmdir()


@contextlib.contextmanager
def emulations() -> Iterator[list[Emulation]]:
    """(a) the slow flush, (b) the slow core, (c) both."""
    with tempfile.TemporaryDirectory(prefix="gwpi-") as folder, cpu_quota(CPU_SHARE) as group:
        shim = build_shim(Path(folder))
        yield [
            Emulation(SYNC_NAME, sync_ms=SYNC_MS, shim=shim),
            Emulation(f"{CPU_SHARE:.0%} of a core", cpu_share=CPU_SHARE, cgroup=group),
            Emulation(BOTH_NAME, sync_ms=SYNC_MS, cpu_share=CPU_SHARE, shim=shim, cgroup=group),
        ]


def ready(emulation: Emulation, stored: int, starts: int) -> dict[str, Any]:
    """Start to READY=1 with ``stored`` nodes stored, the median of ``starts`` starts."""
    with rig() as r:
        config = stored_config(r, stored)
        notify = NotifySocket(r.folder)
        readies = []
        for _ in range(starts):
            gw = r.gatewayd(config, notify=notify.path, emulation=emulation)
            readies.append(notify.wait_for("READY=1") - gw.started)
            gw.process.terminate()
            gw.process.wait(60)
    return {"stored": stored, "ready_s": statistics.median(readies), "ready_all_s": readies}


def run(
    n: int = 1000,
    latency: float = 0.05,
    concurrent: int = 8,
    stored: int = 10_000,
    repeats: int = 3,
    starts: int = 5,
) -> dict[str, Any]:
    """Each storm ``repeats`` times (the figures of the median), READY=1 ``starts`` times."""
    results: dict[str, Any] = {"storms": {}}
    with emulations() as emulated:
        for emulation in emulated:
            runs = [storm.emulated(emulation, n, latency, concurrent) for _ in range(repeats)]
            runs.sort(key=lambda figures: float(figures["makespan_ratio"]))
            middle = runs[len(runs) // 2]
            ratios = [r["makespan_ratio"] for r in runs]
            results["storms"][emulation.name] = middle | {"makespan_ratios": ratios}
        both = emulated[-1]
        results["ready"] = ready(both, stored, starts) | {"emulation": both.name}
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
