"""gatewayctl sn-status and reenable, against the simulator's vendor management API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR

from gatewayd.config.load import load
from gatewayd.ctl.main import main
from gatewayd.daemon.wiring import open_keystore, vendor_token
from gatewayd.sim import Registry, Simulator

pytestmark = pytest.mark.http

TOKEN = "vendor-token-7f3a9c"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    registry = Registry(vendor_token=TOKEN)
    registry.add_pair(VENDOR, MODEL)
    registry.add(VENDOR, MODEL, "SN-P")
    registry.add(VENDOR, MODEL, "SN-A", state="activated")
    with Simulator(registry) as simulator:
        yield simulator


def config(tmp_path: Path, sim: Simulator, token: str | None = TOKEN) -> Path:
    lines = [
        "[gateway]",
        f'state_dir = "{tmp_path / "state"}"',
        "[exosite]",
        f'url = "{sim.url}"',
        f'vendor = "{VENDOR}"',
        f'model = "{MODEL}"',
    ]
    if token is not None:
        token_file = tmp_path / "vendor-token"
        token_file.write_text(token + "\n")
        lines.append(f'vendor_token_file = "{token_file}"')
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("sn", "state"), [("SN-P", "notactivated"), ("SN-A", "activated")])
def test_sn_status(
    sn: str, state: str, tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--config", str(config(tmp_path, sim)), "sn-status", sn, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"sn": sn, "model": MODEL, "state": state}
    assert TOKEN not in out


def test_sn_status_table(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--config", str(config(tmp_path, sim)), "sn-status", "SN-A")
    assert code == 0
    assert out.split() == ["SN", "MODEL", "STATE", "SN-A", MODEL, "activated"]


def test_reenable_makes_a_second_activation_possible(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(config(tmp_path, sim))
    code, out, err = run(capsys, "--config", path, "reenable", "SN-A")
    assert (code, err) == (0, "")
    assert "re-enabled" in out
    code, out, _ = run(capsys, "--config", path, "sn-status", "SN-A", "--json")
    assert json.loads(out)["state"] == "notactivated"
    code, out, _ = run(capsys, "--config", path, "reenable", "SN-A", "--json")
    assert (code, json.loads(out)) == (0, {"sn": "SN-A", "model": "thermo-v1", "reenabled": True})
    assert sim.registry.manage_calls("SN-A") == 3


def test_a_wrong_token_is_refused_and_not_shown(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-token-1234"
    path = str(config(tmp_path, sim, token=wrong))
    code, out, err = run(capsys, "--config", path, "sn-status", "SN-P")
    assert code == 1
    assert "HTTP 401" in err
    assert wrong not in out + err


def test_an_unknown_serial(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--config", str(config(tmp_path, sim)), "reenable", "NOPE")
    assert code == 1
    assert "HTTP 404" in err


def test_without_a_token(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(config(tmp_path, sim, token=None))
    code, _, err = run(capsys, "--config", path, "sn-status", "SN-P")
    assert code == 2
    assert "no vendor token" in err


def test_gatewayctl_uses_the_token_the_daemon_moved_into_the_keyring(
    tmp_path: Path, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, sim)
    assert run(capsys, "--config", str(path), "sn-status", "SN-P")[0] == 0
    loaded = load(path)
    assert not (loaded.gateway.state_dir / "keyring").exists()  # gatewayctl wrote nothing
    vendor_token(loaded, open_keystore(loaded))  # what the daemon does at start
    # the token file may go once the token is in the keyring
    (tmp_path / "vendor-token").unlink()
    text = path.read_text().replace(f'vendor_token_file = "{tmp_path / "vendor-token"}"\n', "")
    path.write_text(text)
    code, out, _ = run(capsys, "--config", str(path), "sn-status", "SN-P", "--json")
    assert code == 0
    assert json.loads(out)["state"] == "notactivated"
