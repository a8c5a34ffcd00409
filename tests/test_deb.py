"""The .deb installed on clean Debian 12 and Debian 13 roots, dependencies from Debian.

Run by ``make deb-check`` (marker ``deb``), after ``make deb``: the package named
by ``$GATEWAYD_DEB`` is installed with apt into a copy of a minimal bookworm and
a minimal trixie root made by debootstrap (cached under
``$XDG_CACHE_HOME/gatewayd``). Inside each, the installed gatewayd runs on that
release's own python3 (3.11, 3.13), paho-mqtt (1.6.1, 2.1.0) and keyring,
against a mosquitto and the simulator running outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Broker, LineWatcher

from gatewayd.keystore import FileKeyring, Keystore
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode

pytestmark = pytest.mark.deb

SUITES = {"bookworm": ("1.6.1", "3.11"), "trixie": ("2.1.0", "3.13")}
"""Each release, with the paho-mqtt and the python3 it ships."""
MIRROR = os.environ.get("GATEWAYD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_TIMEOUT = 900


def run(*argv: str, timeout: float = APT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": ROOT_PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
    )
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}\n{done.stderr}"
    return done


class Root:
    """A Debian root to chroot into."""

    def __init__(self, path: Path, suite: str) -> None:
        self.path = path
        self.suite = suite

    def __call__(self, *argv: str, timeout: float = APT_TIMEOUT) -> str:
        return run("chroot", str(self.path), *argv, timeout=timeout).stdout

    def exists(self, path: str) -> bool:
        """Whether ``path`` is there (a symbolic link counts: its target is the root's)."""
        return os.path.lexists(self.path / path.lstrip("/"))


def base_root(suite: str) -> Path:
    """A minimal root of ``suite``, made once and kept in the cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gatewayd"
    base = cache / f"{suite}-minbase"
    if not base.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f"{suite}-minbase.partial"
        shutil.rmtree(partial, ignore_errors=True)
        run("debootstrap", "--variant=minbase", suite, str(partial), MIRROR)
        partial.rename(base)
    return base


@pytest.fixture(scope="module")
def deb() -> Path:
    path = os.environ.get("GATEWAYD_DEB")
    if not path:
        pytest.fail("GATEWAYD_DEB names no package: run these tests with `make deb-check`")
    return Path(path).resolve()


@contextlib.contextmanager
def fresh_root(suite: str, folder: Path) -> Iterator[Root]:
    """A fresh copy of the cached root of ``suite``, with /proc mounted and the host's DNS."""
    path = folder / "root"
    run("cp", "-a", str(base_root(suite)), str(path))
    shutil.copy("/etc/resolv.conf", path / "etc" / "resolv.conf")
    run("mount", "-t", "proc", "proc", str(path / "proc"))
    try:
        yield Root(path, suite)
    finally:
        subprocess.run(["umount", "-l", str(path / "proc")], check=False)
        shutil.rmtree(path, ignore_errors=True)


def install(root: Root, deb: Path) -> str:
    """Install the package with apt, dependencies from Debian; apt's output."""
    inside = f"/root/{deb.name}"  # where the root's own apt finds it
    shutil.copy(deb, root.path / inside.lstrip("/"))
    root("apt-get", "update", "-q")
    return root("apt-get", "install", "-y", "-q", "--no-install-recommends", inside)


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
    log = LineWatcher(process.stderr, tmp_path / "gatewayd.log")
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
