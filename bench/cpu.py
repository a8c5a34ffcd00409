"""The boot storm's CPU per activation alone, quickly: gatewayd's and the baseline
pipeline's (bench/pipeline.py), each split into user and system time, gatewayd's
split by thread, and each process's context switches per activation.

Each round is a new broker, simulator and state: gatewayd takes a storm of ``--n``
new serials (announced within 1 s), is stopped, then bench/pipeline.py takes a storm
of as many others. One round takes about 20 s; ``make bench`` measures the same
figure (bench/storm.py) among many others.

    python bench/cpu.py                     # 3 rounds; the median ratio
    python bench/cpu.py --rounds 5 --json   # the raw figures too
    python bench/cpu.py --log-level warning # gatewayd without its line per activation
    python bench/cpu.py --py-spy DIR        # gatewayd sampled by py-spy (pip install py-spy)
    python bench/cpu.py --strace DIR        # gatewayd's system calls counted (strace -c -f)
    python bench/cpu.py --perf DIR          # gatewayd's CPU sampled by perf (kernel included)
    python bench/cpu.py --cprofile DIR      # cProfile on every thread (bench/profiled.py)

The file system: ``TMPDIR`` chooses it. On ext4 a file created costs from 20 us to
a millisecond of system time, after some process deleted thousands of files in the
last minute (:func:`create_cost`; printed for each round): a shared machine's tests
make the figures swing. An ext4 file system of the benchmark's own keeps them steady:

    truncate -s 2G /tmp/gwcpu.img && mkfs.ext4 -q /tmp/gwcpu.img
    mkdir -p /tmp/gwcpu && mount -o loop /tmp/gwcpu.img /tmp/gwcpu
    TMPDIR=/tmp/gwcpu python bench/cpu.py

Sampling and tracing slow gatewayd down: their rounds' CPU figures are not the
measurement, only their profiles and counts are.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import storm
from support import WAIT, Rig, cpu_times, rig, separate_simulator, stolen

from gatewayd.adapters.mqtt import new_client
from gatewayd.sim.processes import Output, stop

TICKS = os.sysconf("SC_CLK_TCK")


def times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds of a process (or one of its threads) so far."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def threads(pid: int) -> dict[int, tuple[float, float]]:
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = times(pid, int(task.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def switches(pid: int) -> int:
    """Context switches of every thread of a process so far (voluntary and not): each
    hand-off from one thread to another costs at least one."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)
    return total


def thread_names(pid: int) -> dict[int, str]:
    """Python's names of a process's threads, by native id (py-spy dump), if py-spy is here."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    done = subprocess.run(
        [spy, "dump", "--json", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    try:
        dumped = json.loads(done.stdout)
    except ValueError:
        return {}
    return {t["os_thread_id"]: t["thread_name"] for t in dumped if t.get("os_thread_id")}


def _group(name: str) -> str:
    """exosite-3 and exosite-5 count together."""
    head, _, tail = name.rpartition("-")
    return f"{head}-*" if head and tail.isdigit() else name


def create_cost(folder: Path, count: int = 200) -> float:
    """System CPU seconds per file created in ``folder``: a probe of the file system.
    ext4 passes over, one by one, the free inodes of a block group that were deleted
    within the last minute (five, while their inode table block is dirty), looking each
    up (``recently_deleted``): after another process deleted thousands of files, each
    file created costs up to a millisecond more, for gatewayd (a temp file per CIK)
    and bench/pipeline.py (a file per CIK) alike."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
    for i in range(count):
        os.close(os.open(folder / f".probe-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_stime - before) / count


def wait_online(port: int) -> None:
    """Until gatewayd's retained status says online: both its connections are up, and it
    has subscribed (whatever its log level lets it say)."""
    online = threading.Event()
    client = new_client("bench-cpu-status")
    client.on_message = lambda _c, _u, m: online.set() if b'"online"' in m.payload else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("gatewayd/gateway/bench/status", qos=1)
    try:
        if not online.wait(WAIT):
            raise RuntimeError("gatewayd did not come online")
    finally:
        client.loop_stop()
        client.disconnect()


class Profiled:
    """Starts gatewayd under bench/profiled.py (cProfile on every thread)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def wrap(self, argv: list[str], env: dict[str, str]) -> list[str]:
        env["PROFILE_DIR"] = str(self.folder)
        return [argv[0], str(storm.HERE / "profiled.py"), *argv[3:]]


def gatewayd_storm(
    r: Rig, url: str, serials: list[str], args: argparse.Namespace, k: int
) -> dict[str, Any]:
    profiled = None
    if args.cprofile is not None:
        profiled = Profiled(args.cprofile / f"round-{k}")
        profiled.folder.mkdir(parents=True, exist_ok=True)
    config = r.config(
        url,
        gateway={"log_level": args.log_level},
        exosite={"max_concurrent": 8, "max_rate": 10_000.0, "timeout": 30},
        nodes={"max_pending": 10 * len(serials)},
    )
    gw = r.gatewayd(config, emulation=profiled)
    wait_online(r.broker_port)
    names = thread_names(gw.pid)
    profiler = _profiler(gw.pid, args, k)
    if profiled is not None:
        os.kill(gw.pid, signal.SIGUSR1)  # what the start cost is forgotten
    fleet = storm.Fleet(r.broker_port, serials)
    try:
        machine = cpu_times()
        before, per_thread, switched = times(gw.pid), threads(gw.pid), switches(gw.pid)
        started = time.monotonic()
        fleet.announce(within=1.0)
        if not fleet.wait():
            raise RuntimeError(f"only {len(fleet.answered)} of {len(serials)} nodes answered")
        after, per_thread_after = times(gw.pid), threads(gw.pid)
        switched = switches(gw.pid) - switched
        if set(fleet.statuses.values()) != {"activated"}:
            raise RuntimeError(f"not every node was activated: {set(fleet.statuses.values())}")
        makespan = time.monotonic() - started
        steal = stolen(machine, cpu_times())
    finally:
        fleet.close()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(WAIT)
    if profiled is not None:
        os.kill(gw.pid, signal.SIGUSR2)
        deadline = time.monotonic() + WAIT
        while not (profiled.folder / "done").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    gw.process.terminate()
    gw.process.wait(WAIT)
    n = len(serials)
    probe = create_cost(r.folder / "state" / "keyring")  # gatewayd has stopped
    by_thread: dict[str, list[float]] = {}
    for tid, (user, system) in per_thread_after.items():
        was = per_thread.get(tid, (0.0, 0.0))
        spent = by_thread.setdefault(_group(names.get(tid, f"tid {tid}")), [0.0, 0.0])
        spent[0] += (user - was[0]) / n
        spent[1] += (system - was[1]) / n
    return {
        "user": (after[0] - before[0]) / n,
        "system": (after[1] - before[1]) / n,
        "makespan": makespan,
        "steal": steal,
        "create_us": probe * 1e6,
        "switches": switched / n,
        "threads": dict(sorted(by_thread.items(), key=lambda kv: -sum(kv[1]))),
    }


def _profiler(
    pid: int, args: argparse.Namespace, k: int, name: str = "gatewayd"
) -> subprocess.Popen[bytes] | None:
    if args.py_spy is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = args.py_spy / f"{name}-{k}.txt"
        command = [spy, "record", "--format", "raw", "--rate", str(args.rate), "--threads"]
        # the thread holding the GIL: where Python spends CPU (a thread blocked in a system
        # call may look active to py-spy)
        command += ["--gil", "--nonblocking", "-o", str(out), "-p", str(pid)]
        if args.native:
            command.append("--native")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches: a load generator's warm-up, not a synchronisation
        return process
    if args.perf is not None:
        out = args.perf / f"{name}-{k}.data"
        # PERF_CALL_GRAPH=dwarf,16384 with PYTHONPERFSUPPORT=1 on Python 3.12 names the
        # innermost Python function of each sample
        graph = os.environ.get("PERF_CALL_GRAPH", "fp")
        command = ["perf", "record", "-e", "cpu-clock", "-F", "1000", "--call-graph", graph]
        command += ["-o", str(out)]
        command += ["-p", str(pid)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return process
    if args.strace is not None:
        out = args.strace / f"{name}-{k}.txt"
        # STRACE_OPTIONS="-e trace=futex" with -ff: one file per thread instead of a summary
        options = os.environ.get("STRACE_OPTIONS", "-c").split()
        command = ["strace", *options, "-f", "-o", str(out), "-p", str(pid)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return process
    return None


def pipeline_storm(
    r: Rig,
    url: str,
    others: list[str],
    args: argparse.Namespace,
    k: int,
) -> dict[str, float]:
    command = [sys.executable, str(storm.HERE / "pipeline.py"), "--port", str(r.broker_port)]
    command += ["--url", url, "--folder", str(r.folder / "baseline"), "--workers", "8"]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = Output("pipeline", process.stdout, r.folder / "pipeline.log")
    r.stack.callback(stop, process, output)
    output.wait_for("subscribed")
    profiler = _profiler(process.pid, args, k, "pipeline")
    fleet = storm.Fleet(r.broker_port, others, prefix="baseline")
    try:
        before, switched = times(process.pid), switches(process.pid)
        fleet.announce(within=1.0)
        if not fleet.wait():
            raise RuntimeError(f"the pipeline answered {len(fleet.answered)} of {len(others)}")
        after, switched = times(process.pid), switches(process.pid) - switched
    finally:
        fleet.close()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(WAIT)
    n = len(others)
    probe = create_cost(r.folder / "baseline")
    return {
        "user": (after[0] - before[0]) / n,
        "system": (after[1] - before[1]) / n,
        "create_us": probe * 1e6,
        "switches": switched / n,
    }


def round_(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """gatewayd's storm, then bench/pipeline.py's, on one broker and simulator."""
    serials = [f"BENCH{i:05d}" for i in range(args.n)]
    others = [f"BASE{i:05d}" for i in range(args.n)]
    with rig() as r:
        url = separate_simulator(r, serials + others, args.latency)
        gw = gatewayd_storm(r, url, serials, args, k)
        pipeline = None if args.no_baseline else pipeline_storm(r, url, others, args, k)
    result: dict[str, Any] = {"gatewayd": gw, "pipeline": pipeline}
    if pipeline is not None:
        result["ratio"] = (gw["user"] + gw["system"]) / (pipeline["user"] + pipeline["system"])
    return result


def _ms(figures: dict[str, Any]) -> str:
    user, system = figures["user"] * 1000, figures["system"] * 1000
    return f"{user + system:.2f} ms (user {user:.2f}, sys {system:.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--no-baseline", action="store_true", help="gatewayd's storm only")
    parser.add_argument("--log-level", default="info", help="gatewayd's log level (info)")
    parser.add_argument("--py-spy", type=Path, help="a folder for py-spy's raw profiles")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy's samples per second")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--strace", type=Path, help="a folder for strace -c's counts")
    parser.add_argument("--perf", type=Path, help="a folder for perf record's samples")
    parser.add_argument("--cprofile", type=Path, help="a folder for cProfile's stats by thread")
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    args = parser.parse_args()
    for folder in (args.py_spy, args.strace, args.perf, args.cprofile):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    results = [_round(args, k) for k in range(args.rounds)]  # TMPDIR chooses the file system
    _summary(args, results)
    return 0


def _round(args: argparse.Namespace, k: int) -> dict[str, Any]:
    """One round, printed."""
    result = round_(args, k)
    gw, pipeline = result["gatewayd"], result["pipeline"]
    line = f"round {k + 1}: gatewayd {_ms(gw)}"
    if pipeline is not None:
        line += f"; pipeline {_ms(pipeline)}; ratio {result['ratio']:.2f}"
    line += f"; makespan {gw['makespan']:.2f} s; steal {gw['steal']:.0%}"
    probes = [gw["create_us"]] + ([pipeline["create_us"]] if pipeline is not None else [])
    line += f"; a file created: {' / '.join(f'{p:.0f}' for p in probes)} us sys"
    shifts = [gw["switches"]] + ([pipeline["switches"]] if pipeline is not None else [])
    line += f"; context switches: {' / '.join(f'{p:.0f}' for p in shifts)} per activation"
    print(line, flush=True)
    shares = ", ".join(
        f"{name} {1000 * sum(us):.2f} ({1000 * us[0]:.2f}+{1000 * us[1]:.2f})"
        for name, us in gw["threads"].items()
        if sum(us)
    )
    print(f"  gatewayd by thread, ms (user+sys): {shares}", flush=True)
    return result


def _summary(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    totals = [r["gatewayd"]["user"] + r["gatewayd"]["system"] for r in results]
    users = [r["gatewayd"]["user"] for r in results]
    print(
        f"gatewayd: median {statistics.median(totals) * 1000:.2f} ms "
        f"({min(totals) * 1000:.2f} to {max(totals) * 1000:.2f}); user alone: median "
        f"{statistics.median(users) * 1000:.2f} ms ({min(users) * 1000:.2f} to "
        f"{max(users) * 1000:.2f})"
    )
    if not args.no_baseline:
        bases = [r["pipeline"]["user"] + r["pipeline"]["system"] for r in results]
        ratios = [r["ratio"] for r in results]
        print(
            f"pipeline: median {statistics.median(bases) * 1000:.2f} ms "
            f"({min(bases) * 1000:.2f} to {max(bases) * 1000:.2f}); ratio median "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f})"
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
