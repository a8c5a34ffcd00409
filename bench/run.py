"""Run every benchmark and rewrite bench/RESULTS.md with the figures, the machine and the
versions. ``python bench/run.py --quick`` runs each on a tiny fleet (a smoke test)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import Any

import footprint
import hops
import paho.mqtt
import pi
import redaction
import requests
import store
import storm
from support import DEBIAN_PYTHON

from gatewayd import __version__

HERE = Path(__file__).resolve().parent

TARGETS = {
    "makespan_ratio": ("<=", 1.10),
    "reannounce_ratio": (">=", 0.5),
    "cpu_ratio": ("<=", 1.5),
    "store_ratio": ("<=", 1.5),
    "read_ratio": ("<=", 1.5),
    "ready_s": ("<=", 0.3),
    "rss_idle_mib": ("<", 40.0),
    "idle_cpu_s": ("<", 0.06),
    "pi_sync": ("<=", 1.25),
    "pi_both": ("<=", 1.5),
    "pi_ready_s": ("<=", 1.5),
    "redaction_ratio": ("<=", 1.5),
}
PI_TARGETS = {pi.SYNC_NAME: "pi_sync", pi.BOTH_NAME: "pi_both"}


def met(name: str, value: float) -> str:
    op, target = TARGETS[name]
    ok = value <= target if op == "<=" else value >= target if op == ">=" else value < target
    return f"{'met' if ok else 'MISSED'} (target {op} {target:g})"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def debian_rows(debian: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The start-up and memory of gatewayd on Debian's python3 and packages, as the .deb
    runs it; for information (the targets are for this Python)."""
    if debian is None:
        return [("On Debian's python3 and packages", "not measured: they are missing", "")]
    ready = debian["ready_all_s"]
    return [
        (
            "Start to READY=1 on Debian's python3 and packages (as the .deb runs)",
            (
                f"{debian['ready_s']:.3f} s, median of {len(ready)} starts "
                f"({min(ready):.3f} to {max(ready):.3f})"
            ),
            "",
        ),
        (
            "Resident memory, idle, on Debian's python3 and packages",
            f"{debian['rss_idle_mib']:.1f} MiB",
            "",
        ),
    ]


def redaction_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    after = " / ".join(f"{v:.1f}" for k, v in r.items() if k.startswith("us_after_"))
    remembered = r["remembered_after_offers"]
    long_line = f"a 2,000-character text (a traceback's), the set full: {r['us_long_line']:.0f} us"
    full = f"{r['us_full']:.1f} us ({r['remembered_full']:,} CIKs) / {r['us_after_0']:.1f} us"
    offered = "A log line about an announce offering a CIK, after 0 / 40,000 / 86,400 such"
    return [
        (
            f"{offered} announces (bench/redaction.py)",
            f"{after} us; {remembered} of the offered CIKs remembered",
            "",
        ),
        (
            "The same with the redaction set full / empty",
            f"{full}; the dearest over the cheapest: {r['ratio']:.2f}; {long_line}",
            met("redaction_ratio", r["ratio"]),
        ),
    ]


def report(results: dict[str, Any]) -> str:
    s, st, f = results["storm"], results["store"], results["footprint"]
    rows = [
        (
            "Boot storm makespan / ideal",
            (
                f"{s['makespan']:.2f} s / {s['ideal']:.2f} s = {s['makespan_ratio']:.2f}, "
                f"median of {len(s['makespan_ratios'])} storms "
                f"({', '.join(f'{r:.2f}' for r in s['makespan_ratios'])}; CPU stolen by the "
                f"host: {', '.join(f'{100 * x:.0f}%' for x in s['steal'])})"
            ),
            met("makespan_ratio", s["makespan_ratio"]),
        ),
        ("Boot storm announce to credentials", f"p50 {s['p50']:.2f} s, p99 {s['p99']:.2f} s", ""),
        (
            "CPU per activation in the boot storm / baseline pipeline (bench/pipeline.py)",
            (
                f"{s['cpu_activation'] * 1000:.2f} ms / "
                f"{s['cpu_activation_baseline'] * 1000:.2f} ms = {s['cpu_ratio']:.2f}"
            ),
            met("cpu_ratio", s["cpu_ratio"]),
        ),
        (
            "Re-announce / baseline throughput",
            (
                f"{s['reannounce_throughput']:.0f}/s / "
                f"{s['baseline_throughput']:.0f}/s = {s['reannounce_ratio']:.2f}"
            ),
            met("reannounce_ratio", s["reannounce_ratio"]),
        ),
        (
            "Re-announce p99 (baseline p99)",
            f"{s['reannounce_p99'] * 1000:.0f} ms ({s['baseline_p99'] * 1000:.0f} ms)",
            "",
        ),
    ]
    for count, figures in st["per_count"].items():
        rows.append(
            (
                f"Store / read one node, {int(count):,} stored",
                f"{figures['store_ms']:.2f} ms / {figures['read_ms']:.3f} ms",
                "",
            )
        )
    rows += [
        (
            "Store cost, most / fewest stored",
            f"{st['store_ratio']:.2f}",
            met("store_ratio", st["store_ratio"]),
        ),
        (
            "Read cost, most / fewest stored",
            f"{st['read_ratio']:.2f}",
            met("read_ratio", st["read_ratio"]),
        ),
        (
            f"Start to READY=1, {f['stored']:,} nodes stored",
            (
                f"{f['ready_s']:.3f} s, median of {len(f['ready_all_s'])} starts "
                f"({min(f['ready_all_s']):.3f} to {max(f['ready_all_s']):.3f}; "
                f"Python alone: {f['python_start_s']:.3f} s)"
            ),
            met("ready_s", f["ready_s"]),
        ),
        (
            "Resident memory, idle",
            f"{f['rss_idle_mib']:.1f} MiB",
            met("rss_idle_mib", f["rss_idle_mib"]),
        ),
        ("Resident memory after the boot storm", f"{s['rss_after_storm']:.1f} MiB", ""),
        (
            "A new serial's announce to its credentials (bench/hops.py)",
            (
                f"{results['path']['functions']} functions in {results['path']['modules']} "
                f"modules on {results['path']['threads']} threads"
            ),
            "",
        ),
        *debian_rows(results.get("footprint_debian")),
        *redaction_rows(results["redaction"]),
        (
            f"CPU time over {f['idle_s']:.0f} s idle",
            f"{f['idle_cpu_s']:.3f} s",
            met("idle_cpu_s", f["idle_cpu_s"]),
        ),
    ]
    table = ["| figure | measured | target |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    table += ["", "## Raspberry Pi emulation", "", *pi_table(results["pi"])]
    return "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `make bench` (`bench/run.py`); each run replaces this file.",
            "",
            f"- Date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
            f"- Machine: {machine()}",
            (
                f"- Python {platform.python_version()}, paho-mqtt {paho.mqtt.__version__}, "
                f"requests {requests.__version__}, gatewayd {__version__}"
            ),
            (
                f"- Boot storm: {s['n']} nodes within 1 s, simulator latency "
                f"{s['latency'] * 1000:.0f} ms, max_concurrent {s['max_concurrent']}"
            ),
            "",
            *table,
            "",
            "Raw figures:",
            "",
            "```json",
            json.dumps(results, indent=2),
            "```",
            "",
        ]
    )


def pi_table(figures: dict[str, Any]) -> list[str]:
    """The boot storm and the start on an emulated Raspberry Pi (bench/pi.py)."""
    repeats = len(next(iter(figures["storms"].values()))["makespan_ratios"])
    said = (
        f"The same boot storm; each flush (fsync, fdatasync, syncfs) of gatewayd delayed "
        f"{pi.SYNC_MS:g} ms by bench/slowsync.c, and gatewayd in a cgroup granted "
        f"{pi.CPU_SHARE:.0%} of one core every {pi.PERIOD_US / 1000:g} ms; the median of "
        f"{repeats} storms each."
    )
    lines = [
        said,
        "",
        "| emulated storage / CPU | makespan / ideal | CPU per activation | target |",
        "|---|---|---|---|",
    ]
    for name, s in figures["storms"].items():
        target = PI_TARGETS.get(name)
        ratios = ", ".join(f"{r:.2f}" for r in s["makespan_ratios"])
        lines.append(
            f"| {name} | {s['makespan']:.2f} s / {s['ideal']:.2f} s = {s['makespan_ratio']:.2f} "
            f"({ratios}) | {s['cpu_activation'] * 1000:.2f} ms | "
            f"{met(target, s['makespan_ratio']) if target else ''} |"
        )
    ready = figures["ready"]
    readies = ready["ready_all_s"]
    lines.append(
        f"| {ready['emulation']}: start to READY=1, {ready['stored']:,} nodes stored | "
        f"{ready['ready_s']:.3f} s, median of {len(readies)} starts ({min(readies):.3f} to "
        f"{max(readies):.3f}) | | {met('pi_ready_s', ready['ready_s'])} |"
    )
    return lines


def compile_bytecode() -> None:
    """Compile every module a running gatewayd imports, as installing it does (pip, and the
    .deb's postinst): a start that compiles each module it loads is not one an operator sees.
    """
    script = (
        "import sys, gatewayd.daemon.loop, gatewayd.adapters.exosite, gatewayd.adapters.mqtt;"
        "import gatewayd.adapters.vendor;"
        "files = (getattr(m, '__file__', None) or '' for m in list(sys.modules.values()));"
        "print(*files, sep='\\n')"
    )
    listed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    for name in sorted({line for line in listed.splitlines() if line.endswith(".py")}):
        py_compile.compile(name, doraise=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny fleets; RESULTS.md untouched")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    compile_bytecode()
    if args.quick:
        results = {
            "storm": storm.run(n=16, latency=0.01, concurrent=4, repeats=1),
            "store": store.run(counts=(10, 100)),
            "footprint": footprint.run(stored=100, idle=1.0, starts=2),
            "pi": pi.run(n=16, latency=0.01, concurrent=4, stored=100, repeats=1, starts=1),
        }
    else:
        results = {
            "storm": storm.run(),
            "store": store.run(),
            "footprint": footprint.run(),
            "pi": pi.run(),
        }
        if footprint.debian_python_ready():
            debian = footprint.run(idle=0.0, python=DEBIAN_PYTHON)
            results["footprint_debian"] = {
                key: debian[key] for key in ("ready_s", "ready_all_s", "rss_idle_mib")
            }
    results["redaction"] = redaction.run((0, 400, 864), 200) if args.quick else redaction.run()
    results["path"] = {key: value for key, value in hops.measure().items() if key != "path"}
    text = report(results)
    print(text)
    if not args.quick:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
