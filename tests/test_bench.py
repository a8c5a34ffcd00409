"""The benchmarks run: each on a tiny fleet (their figures are measured by `make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.e2e
@pytest.mark.slow
def test_every_benchmark_runs_on_a_tiny_fleet(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for figure in (
        "Boot storm makespan / ideal",
        "CPU per activation in the boot storm / baseline pipeline",
        "Re-announce / baseline",
        "Start to READY=1",
        "A new serial's announce to its credentials",
        "## Raspberry Pi emulation",
        "fsync +10 ms and 25% of a core: start to READY=1",
    ):
        assert figure in done.stdout
    assert not output.exists()  # a quick run never replaces the recorded results
