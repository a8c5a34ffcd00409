"""The systemd unit and sysusers file, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.config.schema import GatewayConfig

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "gatewayd.service"
SYSUSERS = REPO / "systemd" / "gatewayd.sysusers"
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (package systemd)"
)


def installed_copy(tmp_path: Path) -> Path:
    """The unit as the package installs it, with its commands at this checkout's."""
    text = UNIT.read_text()
    for command in ("gatewayd", "gatewayctl"):
        path = Path(sys.executable).with_name(command)
        assert path.exists()
        text = text.replace(f"/usr/bin/{command} ", f"{path} ")
    unit = tmp_path / "gatewayd.service"
    unit.write_text(text)
    return unit


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = run("systemd-analyze", "verify", "--man=no", str(installed_copy(tmp_path)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_exposure_is_low(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit = installed_copy(tmp_path)
    result = run("systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for gatewayd\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    exposure = float(match.group(1))
    with capsys.disabled():  # the figure belongs in the CI log
        print(f"\nsystemd-analyze security --offline=yes: overall exposure {exposure}")
    assert exposure <= MAX_EXPOSURE


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"]
    assert settings["User"] == settings["Group"] == "gatewayd"
    assert settings["StateDirectory"] == "gatewayd"
    assert settings["StateDirectoryMode"] == "0700"
    assert settings["UMask"] == "0077"
    assert settings["ExecReload"] == "/usr/bin/gatewayctl reload"  # the package's own tool
    assert settings["Restart"] == "on-failure"
    assert settings["RestartPreventExitStatus"] == "2"  # a bad configuration
    runtime = Path("/run", settings["RuntimeDirectory"])
    assert GatewayConfig().control_socket.parent == runtime  # gatewayctl's default finds it


def test_sysusers_creates_the_gatewayd_user(tmp_path: Path) -> None:
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("needs systemd-sysusers")
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).touch()
    result = run("systemd-sysusers", "--dry-run", f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    assert "Creating user 'gatewayd'" in result.stdout + result.stderr
