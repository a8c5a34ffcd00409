"""``gatewayctl export`` and ``import``: a gateway's records and CIKs moved to new hardware.

The old gateway's state is made directly (records and CIKs, as activations leave
them); the new gateway is a real gatewayd started on what the import wrote, its
nodes played by one MQTT client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL, THIRD_PARTY, VENDOR, WAIT, Gateway

from gatewayd.adapters.mqtt import new_client
from gatewayd.adapters.statedb import StateDB
from gatewayd.adapters.statelock import LOCK_NAME
from gatewayd.config.load import load
from gatewayd.core.errors import StateError
from gatewayd.core.model import Node, Reason, State
from gatewayd.core.secret import Secret
from gatewayd.ctl import bundle as bundle_module
from gatewayd.ctl import sealing
from gatewayd.ctl.main import main
from gatewayd.daemon import control, importing
from gatewayd.daemon.wiring import open_keystore
from gatewayd.sim import Registry
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]


def cik(i: int) -> str:
    return f"{i:040x}"


@contextlib.contextmanager
def as_gateway(gw: Gateway) -> Iterator[None]:
    """This process sees the gateway's keyring as its gatewayd does (a third-party backend
    keeps it under XDG_DATA_HOME)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", gw.env["XDG_DATA_HOME"])
        yield


def filled(gw: Gateway, count: int) -> dict[str, str]:
    """``count`` activated nodes in the gateway's state and keystore; their CIKs."""
    with as_gateway(gw):
        return _filled(gw, count)


def _filled(gw: Gateway, count: int) -> dict[str, str]:
    keystore = open_keystore(load(gw.config_path))
    ciks = {f"SN-B{i:04d}": cik(i + 1) for i in range(count)}
    with StateDB.in_dir(gw.state_dir) as db:
        db.begin()
        for i, (sn, value) in enumerate(ciks.items()):
            keystore.store(VENDOR, MODEL, sn, Secret(value))
            db.save(Node(sn, VENDOR, MODEL, State.ACTIVATED, 1_700_000_000.0 + i))
        db.commit()
    return ciks


def ctl(capsys: pytest.CaptureFixture[str], gw: Gateway, *argv: str) -> tuple[int, str, str]:
    with as_gateway(gw):
        code = main(["--config", str(gw.config_path), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(gw: Gateway) -> dict[str, bytes]:
    """Every file of the gateway's state folder, by path, but its lock file (which an import
    may create, and which holds nothing once the import has ended)."""
    if not gw.state_dir.exists():
        return {}
    return {
        str(p): p.read_bytes()
        for p in sorted(gw.state_dir.rglob("*"))
        if p.is_file() and p != gw.state_dir / LOCK_NAME
    }


@pytest.fixture(autouse=True)
def third_party_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """gatewayctl runs in this process: the third-party backend must import here too."""
    monkeypatch.syspath_prepend(str(THIRD_PARTY))


@pytest.fixture
def passphrase(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


def test_a_thousand_nodes_move_to_a_new_gateway(
    tmp_path: Path,
    gateway: MakeGateway,
    registry: Registry,
    broker: Broker,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = gateway(), gateway()
    ciks = filled(old, 1000)
    bundle = tmp_path / "gateway.bundle"
    assert ctl(capsys, old, "export", str(bundle), "--passphrase-file", str(passphrase)) == (
        0,
        f"1000 nodes exported to {bundle}, 1000 with their CIK\n",
        "",
    )
    assert not any(value.encode() in bundle.read_bytes() for value in ciks.values())
    code, out, err = ctl(capsys, new, "import", str(bundle), "--passphrase-file", str(passphrase))
    assert (code, err) == (0, "")
    assert out.startswith("1000 nodes imported")
    new.start()
    answers = reannounce(broker, list(ciks))
    assert {sn: body["cik"] for sn, body in answers.items()} == ciks
    assert registry.total_calls() == 0  # every answer from the keystore
    assert registry.total_manage_calls() == 0


def test_a_wrong_passphrase_or_a_flipped_byte_changes_nothing(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 3)
    filled(new, 1)  # a target with something in it already
    before = snapshot(new)
    wrong = tmp_path / "wrong"
    wrong.write_text("incorrect horse\n")
    wrong.chmod(0o600)
    code, _, err = ctl(capsys, new, "import", str(bundle), "--passphrase-file", str(wrong))
    assert (code, err) == (1, "gatewayctl: wrong passphrase, or the bundle is damaged\n")
    blob = bytearray(bundle.read_bytes())
    for at in (20, len(blob) // 2, len(blob) - 1):  # the salt, the content, the tag
        flipped = tmp_path / f"flipped-{at}"
        damaged = bytearray(blob)
        damaged[at] ^= 0x01
        flipped.write_bytes(damaged)
        code, _, err = ctl(
            capsys, new, "import", str(flipped), "--passphrase-file", str(passphrase)
        )
        assert (code, err) == (1, "gatewayctl: wrong passphrase, or the bundle is damaged\n")
    assert snapshot(new) == before


def with_costs(blob: bytes, passphrase: Path, log2_n: int, r: int, p: int) -> bytes:
    """``blob``'s document sealed again, with scrypt's parameters set to these."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

    secret = sealing.read_passphrase(passphrase)
    document = sealing.unseal(blob, secret)
    salt, nonce = os.urandom(16), os.urandom(12)
    header = sealing._HEADER.pack(sealing.MAGIC, 1, log2_n, r, p, salt, nonce)
    key = Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(secret)
    return header + AESGCM(key).encrypt(nonce, json.dumps(document).encode(), header)


@pytest.mark.parametrize(("log2_n", "r", "p"), [(16, 8, 1), (14, 8, 1), (15, 4, 1), (15, 8, 2)])
def test_a_bundle_sealed_with_other_key_parameters_is_refused(
    tmp_path: Path,
    gateway: MakeGateway,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    log2_n: int,
    r: int,
    p: int,
) -> None:
    """Even one the passphrase opens: only gatewayctl's own parameters are accepted."""
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    bundle.write_bytes(with_costs(bundle.read_bytes(), passphrase, log2_n, r, p))
    code, out, err = ctl(capsys, new, "import", str(bundle), "--passphrase-file", str(passphrase))
    assert (code, out) == (1, "")
    assert err == (
        "gatewayctl: the bundle is damaged, or not gatewayctl's: it asks for a key derived "
        f"with scrypt N = 2^{log2_n}, r = {r}, p = {p}; gatewayctl writes and reads only "
        "N = 2^15, r = 8, p = 1\n"
    )
    assert snapshot(new) == {}


def test_a_header_asking_for_a_4_gib_key_is_refused_before_any_is_derived(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N = 2^20, r = 32: scrypt would need 4 GiB and many seconds (17 s on a fast PC)."""
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    filled(new, 1)
    before = snapshot(new)
    blob = bytearray(bundle.read_bytes())
    blob[9:12] = bytes([20, 32, 1])  # log2 of N, r, p
    bundle.write_bytes(blob)
    started = time.monotonic()
    code, out, err = ctl(capsys, new, "import", str(bundle), "--passphrase-file", str(passphrase))
    assert time.monotonic() - started < 2.0
    assert (code, out) == (1, "")
    assert err.startswith("gatewayctl: the bundle is damaged, or not gatewayctl's: it asks ")
    assert "N = 2^20, r = 32, p = 1;" in err
    assert snapshot(new) == before


@pytest.mark.parametrize("command", ["export", "import"])
def test_a_passphrase_file_others_can_read_is_warned_of(
    tmp_path: Path,
    gateway: MakeGateway,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 1)
    target = new if command == "import" else gateway()
    if command == "export":
        filled(target, 1)
    argv = (command, str(bundle), "--passphrase-file", str(passphrase))
    assert ctl(capsys, target, *argv)[::2] == (0, "")  # 0600: no warning
    passphrase.chmod(0o644)
    code, _out, err = ctl(capsys, target, *argv)
    assert code == 0
    assert err == (
        f"gatewayctl: warning: the passphrase file {passphrase} is readable by group or "
        "others (mode 0644); whoever has it and the bundle has every CIK: chmod 600 it\n"
    )
    passphrase.chmod(0o640)
    assert "(mode 0640)" in ctl(capsys, target, *argv)[2]


def test_a_stored_cik_that_differs_is_kept_unless_the_bundle_is_preferred(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    with as_gateway(new):
        keystore = open_keystore(load(new.config_path))
        keystore.store(VENDOR, MODEL, "SN-B0000", Secret("e" * 40))
    argv = ("import", str(bundle), "--passphrase-file", str(passphrase))
    assert ctl(capsys, new, *argv) == (
        1,
        f"1 nodes imported into {new.state_dir}, 0 already held, 1 kept as stored, 0 refused\n",
        (
            "gatewayctl: SN-B0000: kept as stored: its CIK differs from the bundle's "
            "(--prefer-bundle takes the bundle's)\n"
        ),
    )
    with as_gateway(new):
        assert keystore.load(VENDOR, MODEL, "SN-B0000") == Secret("e" * 40)
        assert keystore.load(VENDOR, MODEL, "SN-B0001") == Secret(cik(2))
    assert ctl(capsys, new, *argv, "--prefer-bundle")[0] == 0
    with as_gateway(new):
        assert keystore.load(VENDOR, MODEL, "SN-B0000") == Secret(cik(1))
        assert [r.cik for r in keystore.retired(VENDOR, MODEL, "SN-B0000")] == [Secret("e" * 40)]


def test_a_cik_retired_here_is_not_taken_back_from_a_bundle(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    with as_gateway(new):
        keystore = open_keystore(load(new.config_path))
        keystore.store(VENDOR, MODEL, "SN-B0000", Secret(ciks["SN-B0000"]))
        assert keystore.retire(VENDOR, MODEL, "SN-B0000")  # Exosite refused it here
    argv = ("import", str(bundle), "--passphrase-file", str(passphrase))
    assert ctl(capsys, new, *argv) == (
        1,
        f"1 nodes imported into {new.state_dir}, 0 already held, 0 kept as stored, 1 refused\n",
        (
            "gatewayctl: SN-B0000: not imported: its CIK in the bundle was retired here "
            "(refused, or rotated away)\n"
        ),
    )
    with as_gateway(new):
        assert keystore.load(VENDOR, MODEL, "SN-B0000") is None
        assert keystore.load(VENDOR, MODEL, "SN-B0001") == Secret(ciks["SN-B0001"])


def test_an_import_into_a_running_gatewayd_goes_through_its_control_socket(
    tmp_path: Path,
    gateway: MakeGateway,
    registry: Registry,
    broker: Broker,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1,000 nodes (two parts of the bundle) into a gatewayd that runs; a node it had
    rejected meanwhile is sent its credentials at once; a second import changes nothing."""
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 1000)
    new.start()
    waiting = "SN-B0007"  # unknown to the simulator: rejected by the new gateway
    with mosquitto_sub(broker, f"gatewayd/nodes/{waiting}/credentials", count=2) as told:
        assert reannounce(broker, [waiting])[waiting]["status"] == "rejected"
        calls = registry.total_calls()
        argv = ("import", str(bundle), "--passphrase-file", str(passphrase))
        assert ctl(capsys, new, *argv) == (
            0,
            (
                "1000 nodes imported into the running gatewayd, 0 already held, 0 kept as stored, "
                "0 refused\n"
            ),
            "",
        )
        told.wait(timeout=WAIT)
    assert [body["status"] for body in told.bodies] == ["rejected", "activated"]
    assert told.bodies[1]["cik"] == ciks[waiting]
    assert new.wait_for(f"node {waiting}: imported from a bundle")
    answers = reannounce(broker, list(ciks))
    assert {sn: body["cik"] for sn, body in answers.items()} == ciks
    assert registry.total_calls() == calls  # every answer from the keystore
    assert ctl(capsys, new, *argv) == (
        0,
        (
            "0 nodes imported into the running gatewayd, 1000 already held, 0 kept as stored, "
            "0 refused\n"
        ),
        "",
    )


def test_a_running_gatewayd_keeps_a_differing_cik_unless_the_bundle_is_preferred(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    with as_gateway(new), StateDB.in_dir(new.state_dir) as db:
        keystore = open_keystore(load(new.config_path))
        keystore.store(VENDOR, MODEL, "SN-B0000", Secret("e" * 40))
        db.begin()
        db.save(Node("SN-B0000", VENDOR, MODEL, State.ACTIVATED, 1_700_000_000.0))
        db.commit()
    new.start()
    argv = ("import", str(bundle), "--passphrase-file", str(passphrase))
    code, out, err = ctl(capsys, new, *argv)
    assert (code, out) == (
        1,
        (
            "1 nodes imported into the running gatewayd, 0 already held, 1 kept as stored, "
            "0 refused\n"
        ),
    )
    assert err == (
        "gatewayctl: SN-B0000: kept as stored: its CIK differs from the bundle's "
        "(--prefer-bundle takes the bundle's)\n"
    )
    with as_gateway(new):
        assert keystore.load(VENDOR, MODEL, "SN-B0000") == Secret("e" * 40)
        assert keystore.load(VENDOR, MODEL, "SN-B0001") == Secret(cik(2))
    assert ctl(capsys, new, *argv, "--prefer-bundle") == (
        0,
        (
            "1 nodes imported into the running gatewayd, 1 already held, 0 kept as stored, "
            "0 refused\n"
        ),
        "",
    )
    with as_gateway(new):
        assert keystore.load(VENDOR, MODEL, "SN-B0000") == Secret(cik(1))
        assert [r.cik for r in keystore.retired(VENDOR, MODEL, "SN-B0000")] == [Secret("e" * 40)]
    new.wait_for("node SN-B0000: imported from a bundle; the CIK stored before is retired")


def test_a_damaged_bundle_sends_nothing_to_a_running_gatewayd(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, bundle, _ciks = exported(tmp_path, gateway, passphrase, capsys, 3)
    new.start()
    damaged = bytearray(bundle.read_bytes())
    damaged[-5] ^= 0x01
    bundle.write_bytes(damaged)
    code, out, err = ctl(capsys, new, "import", str(bundle), "--passphrase-file", str(passphrase))
    assert (code, out, err) == (1, "", "gatewayctl: wrong passphrase, or the bundle is damaged\n")
    code, out, _ = ctl(capsys, new, "list", "--json")
    assert (code, json.loads(out)) == (0, [])


class Told:
    """What ``mosquitto_sub`` received: its answers, once it has received them all."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.bodies: list[dict[str, Any]] = []

    def wait(self, timeout: float) -> None:
        out, _ = self.process.communicate(timeout=timeout)
        self.bodies = [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def mosquitto_sub(broker: Broker, topic: str, count: int) -> Iterator[Told]:
    """mosquitto-clients' subscriber on ``topic``, subscribed once this yields, until it has
    received ``count`` messages."""
    argv = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-d"]
    argv += ["-t", topic, "-C", str(count), "-W", str(int(WAIT))]
    process = subprocess.Popen(["stdbuf", "-oL", *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # -W bounds the wait
            if "SUBACK" in line:
                break
        yield Told(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def exported(
    tmp_path: Path,
    gateway: MakeGateway,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    count: int,
) -> tuple[Gateway, Path, dict[str, str]]:
    """A new gateway, and the bundle of an old one with ``count`` activated nodes; their CIKs."""
    old, new = gateway(), gateway()
    ciks = filled(old, count)
    bundle = tmp_path / "gateway.bundle"
    assert ctl(capsys, old, "export", str(bundle), "--passphrase-file", str(passphrase))[0] == 0
    return new, bundle, ciks


def reannounce(broker: Broker, serials: list[str]) -> dict[str, dict[str, Any]]:
    """Every serial announces once; the final answers, by serial."""
    answers: dict[str, dict[str, Any]] = {}
    done = threading.Condition()
    subscribed = threading.Event()

    def on_message(_client: object, _userdata: object, message: Any) -> None:
        body = json.loads(message.payload)
        if body["status"] in {"activated", "rejected"}:
            with done:
                answers[str(body["sn"])] = body
                done.notify_all()

    client = new_client("bundle-fleet")
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe("gatewayd/nodes/+/credentials", qos=1)
        assert subscribed.wait(WAIT)
        for sn in serials:
            client.publish(f"gatewayd/nodes/{sn}/announce", b"{}", qos=1)
        with done:
            assert done.wait_for(lambda: len(answers) >= len(serials), WAIT), len(answers)
    finally:
        client.loop_stop()
        client.disconnect()
    return answers


def test_a_bundle_goes_to_a_running_gatewayd_in_parts_that_fit_its_line() -> None:
    made = [{"sn": f"SN-{i:05d}", "pad": "x" * 300} for i in range(2000)]
    parts = bundle_module._parts(made)
    assert len(parts) > 1
    assert [m for part in parts for m in part] == made
    for part in parts:
        size = len(json.dumps({"command": "import", "entries": part}, separators=(",", ":")))
        assert size <= bundle_module.PART + 1024 < control.MAX_LINE
    assert bundle_module._parts([{"sn": "x" * bundle_module.PART}]) == [
        [{"sn": "x" * bundle_module.PART}]
    ]  # one entry larger than a part goes alone


# ------------------------------------------------------------- retired CIKs


def holding(gw: Gateway, sn: str, value: str) -> None:
    """``sn`` activated in the (stopped) gateway's state, ``value`` its CIK."""
    with as_gateway(gw), StateDB.in_dir(gw.state_dir) as db:
        open_keystore(load(gw.config_path)).store(VENDOR, MODEL, sn, Secret(value))
        db.begin()
        db.save(Node(sn, VENDOR, MODEL, State.ACTIVATED, 1_700_000_000.0))
        db.commit()


def export(capsys: pytest.CaptureFixture[str], gw: Gateway, out: Path, passphrase: Path) -> Path:
    assert ctl(capsys, gw, "export", str(out), "--passphrase-file", str(passphrase))[0] == 0
    return out


def retired_here(gw: Gateway, sn: str) -> list[tuple[Secret, str]]:
    with as_gateway(gw):
        keystore = open_keystore(load(gw.config_path))
        return [(r.cik, r.why) for r in keystore.retired(VENDOR, MODEL, sn)]


def stored_here(gw: Gateway, sn: str) -> Secret | None:
    with as_gateway(gw):
        return open_keystore(load(gw.config_path)).load(VENDOR, MODEL, sn)


REFUSED = (
    "gatewayctl: {sn}: not imported: its CIK in the bundle was retired here "
    "(refused, or rotated away)\n"
)


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_no_cik_ever_retired_comes_back_from_an_old_bundle(
    tmp_path: Path,
    gateway: MakeGateway,
    broker: Broker,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    running: bool,
) -> None:
    """X, then Y and Z, each replacing the one before through a retire (an import that
    prefers the bundle); the bundle exported while X was current is refused, even with
    --prefer-bundle: Z stays current, X and Y stay retired."""
    sn = "SN-R1"
    x, y, z = "1" * 40, "2" * 40, "3" * 40
    gw = gateway()
    holding(gw, sn, x)
    old = export(capsys, gw, tmp_path / "old.bundle", passphrase)
    newer: dict[str, Path] = {}
    for value in (y, z):
        other = gateway()
        holding(other, sn, value)
        newer[value] = export(capsys, other, tmp_path / f"{value[0]}.bundle", passphrase)
    if running:
        gw.start()
    where = "the running gatewayd" if running else str(gw.state_dir)
    preferring = ("--passphrase-file", str(passphrase), "--prefer-bundle")
    for value in (y, z):
        code, out, err = ctl(capsys, gw, "import", str(newer[value]), *preferring)
        assert (code, err) == (0, "")
        assert out.startswith(f"1 nodes imported into {where}")
    code, out, err = ctl(capsys, gw, "import", str(old), *preferring)
    assert (code, err) == (1, REFUSED.format(sn=sn))
    assert out.startswith(f"0 nodes imported into {where}")
    assert stored_here(gw, sn) == Secret(z)
    replaced = "replaced by an import"
    assert retired_here(gw, sn) == [(Secret(x), replaced), (Secret(y), replaced)]
    code, out, _ = ctl(capsys, gw, "show", sn, "--json")
    shown = json.loads(out)["retired"]
    assert [one["why"] for one in shown] == [replaced, replaced]
    assert all(set(one) == {"at", "why"} and one["at"].endswith("Z") for one in shown)
    assert not any(value in out for value in (x, y, z))
    if not running:
        gw.start()
    assert reannounce(broker, [sn])[sn]["cik"] == z


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_a_new_gateway_refuses_the_ciks_the_old_one_retired(
    tmp_path: Path,
    gateway: MakeGateway,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    running: bool,
) -> None:
    """The bundle carries each node's retired CIKs, with when and why: a bundle older
    still, imported into the new gateway, cannot bring one back there either."""
    sn = "SN-R2"
    x, y, z = "4" * 40, "5" * 40, "6" * 40
    old, new = gateway(), gateway()
    holding(old, sn, x)
    oldest = export(capsys, old, tmp_path / "oldest.bundle", passphrase)
    with as_gateway(old):
        keystore = open_keystore(load(old.config_path))
        assert keystore.retire(VENDOR, MODEL, sn)  # Exosite refused it
        keystore.store(VENDOR, MODEL, sn, Secret(y))
        assert keystore.retire(VENDOR, MODEL, sn, why="rotated")
        keystore.store(VENDOR, MODEL, sn, Secret(z))
        history = keystore.retired(VENDOR, MODEL, sn)
    moving = export(capsys, old, tmp_path / "moving.bundle", passphrase)
    if running:
        new.start()
    argv = ("--passphrase-file", str(passphrase))
    assert ctl(capsys, new, "import", str(moving), *argv)[::2] == (0, "")
    with as_gateway(new):
        assert open_keystore(load(new.config_path)).retired(VENDOR, MODEL, sn) == history
    code, _out, err = ctl(capsys, new, "import", str(oldest), *argv, "--prefer-bundle")
    assert (code, err) == (1, REFUSED.format(sn=sn))
    assert stored_here(new, sn) == Secret(z)
    assert retired_here(new, sn) == [
        (Secret(x), "refused by Exosite, or rotated away"),
        (Secret(y), "rotated"),
    ]


# ------------------------------------------- one set of rules, gatewayd running or not


X, Y = "7" * 40, "8" * 40


def record(sn: str, state: State, now: float) -> Node:
    """A record of ``sn`` in ``state`` as gatewayd leaves it, made a minute before ``now``."""
    seen = now - 60
    match state:
        case State.ACTIVATED:
            return Node(sn, VENDOR, MODEL, state, seen, 1, activated_at=seen)
        case State.PENDING:  # its next attempt an hour away (retry_cap is raised to match)
            return Node(sn, VENDOR, MODEL, state, seen, 1, now + 3600, "HTTP 503")
        case _:
            return Node(sn, VENDOR, MODEL, state, seen, 1, None, "HTTP 404",
                        Reason.UNKNOWN_SERIAL, 404, rejected_at=seen)  # fmt: skip


def put(gw: Gateway, node: Node | None, cik: str | None, retired: tuple[str, ...] = ()) -> None:
    """``node`` (None: no record), ``cik`` as its stored CIK and ``retired`` as CIKs retired
    for it, in the (stopped) gateway's state folder and keystore."""
    sn = "SN-S1"
    with as_gateway(gw), StateDB.in_dir(gw.state_dir) as db:
        keystore = open_keystore(load(gw.config_path))
        for value in retired:
            keystore.store(VENDOR, MODEL, sn, Secret(value))
            assert keystore.retire(VENDOR, MODEL, sn, why="rotated")
        if cik is not None:
            keystore.store(VENDOR, MODEL, sn, Secret(cik))
        if node is not None:
            db.begin()
            db.save(node)
            db.commit()


@dataclasses.dataclass(frozen=True)
class Case:
    """A node held here, its entry in a bundle, and what an import of it comes to."""

    here: tuple[State | None, str | None, tuple[str, ...]]
    """The record's state held here (None: no record), the CIK stored, the CIKs retired."""
    bundle: tuple[State, str | None]
    """The state and the CIK of the bundle's entry."""
    prefer: bool
    """--prefer-bundle."""
    counted: tuple[int, int, int, int]
    """Imported, already held, kept as stored, refused."""
    after: tuple[State, str]
    """The record's state and the CIK stored, after the import."""


A, P, R = State.ACTIVATED, State.PENDING, State.REJECTED
# fmt: off
CASES = {
    "activated-vs-rejected-without-cik":
        Case((A, X, ()), (R, None), prefer=False, counted=(0, 1, 0, 0), after=(A, X)),
    "activated-vs-rejected-without-cik-preferred":
        Case((A, X, ()), (R, None), prefer=True, counted=(0, 1, 0, 0), after=(A, X)),
    "activated-vs-pending-with-another-cik-preferred":
        Case((A, X, ()), (P, Y), prefer=True, counted=(0, 0, 1, 0), after=(A, X)),
    "differing-cik":
        Case((A, X, ()), (A, Y), prefer=False, counted=(0, 0, 1, 0), after=(A, X)),
    "differing-cik-preferred":
        Case((A, X, ()), (A, Y), prefer=True, counted=(1, 0, 0, 0), after=(A, Y)),
    "cik-retired-here":
        Case((A, Y, (X,)), (A, X), prefer=True, counted=(0, 0, 0, 1), after=(A, Y)),
    "unknown-here":
        Case((None, None, ()), (A, X), prefer=False, counted=(1, 0, 0, 0), after=(A, X)),
    "pending-vs-activated":
        Case((P, None, ()), (A, X), prefer=False, counted=(1, 0, 0, 0), after=(A, X)),
}
# fmt: on


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an import printed and left: its exit code, its counts line (where it imported
    into left out), its stderr, the record, the CIK stored and the CIKs retired."""

    code: int
    said: str
    err: str
    node: Node | None
    stored: Secret | None
    retired: list[tuple[Secret, str]]


def imported(gw: Gateway, bundle: Path, passphrase: Path, *, prefer: bool) -> Outcome:
    """gatewayctl (a subprocess) imports ``bundle`` into ``gw``, running or not."""
    argv = ["import", str(bundle), "--passphrase-file", str(passphrase)]
    done = gw.ctl(*argv, *(["--prefer-bundle"] if prefer else []))
    where = "the running gatewayd" if gw.process is not None else str(gw.state_dir)
    assert done.stdout.count(f" nodes imported into {where}, ") == 1, done.stdout
    with StateDB.in_dir(gw.state_dir, readonly=True) as db:
        node = db.get("SN-S1")
    said = done.stdout.replace(where, "HERE")
    return Outcome(
        done.returncode, said, done.stderr, node, stored_here(gw, "SN-S1"),
        retired_here(gw, "SN-S1"),
    )  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_an_import_comes_to_the_same_whether_gatewayd_runs_or_not(
    tmp_path: Path, gateway: MakeGateway, passphrase: Path, capsys: pytest.CaptureFixture[str],
    case: Case,
) -> None:  # fmt: skip
    """The same bundle imported into the same state: by gatewayctl alone, gatewayd stopped,
    and into a running gatewayd; the records, CIKs and counts are the same, and as the
    case says."""
    now = time.time()
    old = gateway()
    (state, cik), (here_state, stored, retired) = case.bundle, case.here
    put(old, record("SN-S1", state, now), cik)
    bundle = export(capsys, old, tmp_path / "case.bundle", passphrase)
    outcomes = []
    for running in (False, True):
        gw = gateway(exosite={"retry_cap": 7200.0})
        put(gw, None if here_state is None else record("SN-S1", here_state, now), stored, retired)
        if running:
            gw.start()
        outcomes.append(imported(gw, bundle, passphrase, prefer=case.prefer))
    stopped, live = outcomes
    assert stopped == live
    taken, held, kept, refused = case.counted
    assert stopped.said == (
        f"{taken} nodes imported into HERE, {held} already held, {kept} kept as stored, "
        f"{refused} refused\n"
    )
    assert stopped.code == (1 if kept or refused else 0)
    assert stopped.node is not None
    assert (stopped.node.state, stopped.stored) == (case.after[0], Secret(case.after[1]))
    if taken:
        assert stopped.node == record("SN-S1", state, now)
    elif here_state is not None:
        assert stopped.node == record("SN-S1", here_state, now)  # left as it was


def test_a_node_activated_here_is_not_downgraded_by_an_offline_import(
    tmp_path: Path,
    gateway: MakeGateway,
    registry: Registry,
    broker: Broker,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bundle holding the node rejected, without a CIK, imported with gatewayd stopped:
    the node stays activated with its CIK here, and is answered from the keystore."""
    now = time.time()
    old, new = gateway(), gateway()
    put(old, record("SN-S1", State.REJECTED, now), None)
    bundle = export(capsys, old, tmp_path / "rejected.bundle", passphrase)
    held = record("SN-S1", State.ACTIVATED, now)
    put(new, held, X)
    done = new.ctl("import", str(bundle), "--passphrase-file", str(passphrase))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"0 nodes imported into {new.state_dir}, 1 already held, 0 kept as stored, 0 refused\n"
    )
    with StateDB.in_dir(new.state_dir, readonly=True) as db:
        assert db.get("SN-S1") == held
    assert stored_here(new, "SN-S1") == Secret(X)
    new.start()
    answer = reannounce(broker, ["SN-S1"])["SN-S1"]
    assert (answer["status"], answer["cik"]) == ("activated", X)
    assert registry.total_calls() == 0


def test_a_stopped_import_whose_records_the_state_database_refuses_fails(
    tmp_path: Path,
    gateway: MakeGateway,
    passphrase: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gatewayd stopped: a record the state database does not take makes the import fail
    (exit 1, saying so), though its CIK, written first, is stored; imported again once the
    database takes writes, the node is there."""
    new, bundle, ciks = exported(tmp_path, gateway, passphrase, capsys, 2)
    argv = ("import", str(bundle), "--passphrase-file", str(passphrase))
    with monkeypatch.context() as patch:

        def refused(_db: StateDB, node: Node) -> None:
            raise StateError(f"cannot save {node.sn}: disk full")

        patch.setattr(StateDB, "save", refused)
        code, _out, err = ctl(capsys, new, *argv)
    assert code == 1
    assert f"the state database refused writes: {importing.STATE_REFUSED}" in err
    assert ctl(capsys, new, *argv)[0] == 0
    with StateDB.in_dir(new.state_dir, readonly=True) as db:
        assert sorted(node.sn for node in db.all()) == sorted(ciks)
    assert {sn: stored_here(new, sn) for sn in ciks} == {sn: Secret(v) for sn, v in ciks.items()}
