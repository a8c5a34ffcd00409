"""``python -m gatewayd.sim.demo``, as a newcomer runs it: it must work and show no CIK."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

FULL_CIK = re.compile(r"[0-9a-fA-F]{40}")


def test_demo_activates_every_node_and_shows_no_cik() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd.sim.demo", "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for sn in ("TH-0001", "TH-0002"):
        activated = re.compile(rf"^ +{sn} +activated +cik=\w{{4}}…\(40 chars\)", re.MULTILINE)
        assert activated.search(output), output
    assert "TH-0003" not in output
    assert "TH-0001  answered from the keyring" in output
    assert FULL_CIK.search(output) is None, "a full CIK appears in the demo's output"
    folder = re.search(r"^working folder: (\S+)$", output, re.MULTILINE)
    assert folder is not None
    assert not Path(folder[1]).exists(), "the demo left its temporary folder behind"
