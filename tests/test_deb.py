"""The .deb installed on clean Debian 12 and Debian 13 roots, dependencies from Debian.

Run by ``make deb-check`` (marker ``deb``), after ``make deb``: the package named
by ``$GATEWAYD_DEB`` is installed with apt into a copy of a minimal bookworm and
a minimal trixie root made by debootstrap (cached under
``$XDG_CACHE_HOME/gatewayd``). Inside each, the installed gatewayd runs on that
release's own python3 (3.11, 3.13), paho-mqtt (1.6.1, 2.1.0) and keyring,
against a mosquitto and the simulator running outside.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT
from debroot import MIRROR, ROOT_PATH, SUITES, Root, fresh_root, install, run, the_package

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker, Output

pytestmark = pytest.mark.deb


@pytest.fixture(scope="module")
def deb() -> Path:
    return the_package()


@pytest.fixture(scope="module", params=list(SUITES))
def root(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Root]:
    with fresh_root(request.param, tmp_path_factory.mktemp(request.param)) as made:
        yield made


@pytest.fixture(scope="module")
def installed(root: Root, deb: Path) -> str:
    said = install(root, deb)
    print(said)
    return said


def test_the_dependencies_come_from_debian(root: Root, installed: str) -> None:
    versions = {}
    for package in ("python3-paho-mqtt", "python3-keyring", "python3-requests", "python3-systemd"):
        assert f"Unpacking {package} " in installed  # installed by apt with the package
        versions[package] = root("dpkg-query", "-W", "-f=${Version}", package)
        policy = root("apt-cache", "policy", package)
        assert f"{MIRROR} {root.suite}/main" in policy
    print(f"\ninstalled from {MIRROR} {root.suite}: {versions}")
    paho_version, python_version = SUITES[root.suite]
    assert versions["python3-paho-mqtt"].startswith(paho_version)
    assert not list((root.path / "usr/local/lib").glob("python3*/dist-packages/*"))
    paho = root("python3", "-c", "import paho.mqtt; print(paho.mqtt.__version__)")
    assert paho.strip() == paho_version
    assert root("python3", "--version").startswith(f"Python {python_version}.")


def test_user_conffile_unit_and_man_pages_are_in_place(root: Root, installed: str) -> None:
    assert root("getent", "passwd", "gatewayd").split(":")[6].strip() == "/usr/sbin/nologin"
    assert root("getent", "group", "gatewayd").startswith("gatewayd:")
    conffiles = root("dpkg-query", "--control-show", "gatewayd", "conffiles")
    assert "/etc/gatewayd/config.toml" in conffiles
    assert root.exists("/lib/systemd/system/gatewayd.service")
    assert root.exists("/etc/systemd/system/multi-user.target.wants/gatewayd.service")
    postinst = (root.path / "var/lib/dpkg/info/gatewayd.postinst").read_text()
    assert "_dh_action=restart" in postinst  # restarted on upgrade, started on install
    for page in ("man8/gatewayd.8.gz", "man8/gatewayctl.8.gz", "man5/gatewayd.toml.5.gz"):
        assert root.exists(f"/usr/share/man/{page}")


def test_the_commands_run_on_debians_python(root: Root, installed: str) -> None:
    assert root("gatewayd", "--version").strip() == "gatewayd 0.1.0"
    assert root("gatewayctl", "check-config").strip() == "ok"
    assert root("head", "-1", "/usr/bin/gatewayd").strip() == "#!/usr/bin/python3"


def test_the_installed_daemon_activates_a_node_and_purge_keeps_the_cik(
    root: Root, installed: str, tmp_path: Path
) -> None:
    registry = Registry()
    registry.add_pair(VENDOR, MODEL)
    registry.add(VENDOR, MODEL, "SN-DEB1")
    broker = Broker(tmp_path)
    broker.start()
    try:
        with Simulator(registry) as sim:
            cik = smoke_run(root, broker, sim, tmp_path)
    finally:
        broker.stop()
    keyring = root.path / "var/lib/gatewayd/keyring"
    kept = sorted(p.name for p in keyring.iterdir())
    assert kept
    root("apt-get", "remove", "-y", "-q", "gatewayd")
    assert root.exists("/etc/gatewayd/config.toml")  # remove keeps the configuration
    assert sorted(p.name for p in keyring.iterdir()) == kept
    purged = run("chroot", str(root.path), "apt-get", "purge", "-y", "-q", "gatewayd")
    assert not root.exists("/etc/gatewayd/config.toml")  # purge removes it
    assert sorted(p.name for p in keyring.iterdir()) == kept  # but never the CIKs
    assert "the node records and CIKs in /var/lib/gatewayd were kept" in purged.stderr
    stored = Keystore(FileKeyring(keyring)).load(VENDOR, MODEL, "SN-DEB1")
    assert stored is not None
    assert stored.reveal() == cik


def smoke_run(root: Root, broker: Broker, sim: Simulator, tmp_path: Path) -> str:
    """Run the installed gatewayd as its own user; one node gets its credentials."""
    (root.path / "etc/gatewayd/smoke.toml").write_text(
        f'[gateway]\nid = "deb-smoke"\nlog_level = "debug"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[exosite]\nurl = "{sim.url}"\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\n'
        "timeout = 5\n"
    )
    uid = root("id", "-u", "gatewayd").strip()
    gid = root("id", "-g", "gatewayd").strip()
    root("install", "-d", "-o", "gatewayd", "-g", "gatewayd", "-m", "0700", "/var/lib/gatewayd")
    root("install", "-d", "-o", "gatewayd", "-g", "gatewayd", "-m", "0750", "/run/gatewayd")
    process = subprocess.Popen(
        [
            *("chroot", f"--userspec={uid}:{gid}", str(root.path)),
            *("/usr/bin/gatewayd", "--config", "/etc/gatewayd/smoke.toml"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": ROOT_PATH, "PYTHONUNBUFFERED": "1"},
    )
    log = Output("gatewayd", process.stderr, tmp_path / "gatewayd.log")
    try:
        log.wait_for("subscribed to ")
        node = SimulatedNode(broker.host, broker.port, "SN-DEB1")
        node.connect()
        try:
            body = node.activate(timeout=WAIT)
        finally:
            node.close()
        ((_, cik),) = sim.registry.issued()
        assert (body["status"], body["cik"]) == ("activated", cik)
        status = json.loads(
            root("gatewayctl", "--config", "/etc/gatewayd/smoke.toml", "status", "--json")
        )
        assert (status["broker"], status["nodes"]["activated"]) == ("connected", 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        log.close()
    text = (tmp_path / "gatewayd.log").read_text()
    assert "Traceback" not in text
    assert "node SN-DEB1: credentials activated" in text
    assert cik not in text
    return cik
