"""The installed package under a real systemd: a Debian 12 and a Debian 13 root booted in
systemd-nspawn, as a gateway boots.

Run by ``make deb-check`` (marker ``deb``). The root is a fresh copy of the
cached minimal root with the package installed by apt; a minbase root has no
``/etc/hosts``, so one is written. The container shares the host's network, so
gatewayd inside reaches a mosquitto and the simulator running outside. Commands
run inside it through ``nsenter`` (no machined on the host: ``--register=no``,
``--keep-unit``). A drop-in makes the watchdog quick (``WatchdogSec=3``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import MODEL, VENDOR, WAIT
from debroot import ROOT_PATH, SUITES, fresh_root, install, the_package

from gatewayd.adapters import logs
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.deb

BOOT_TIMEOUT = 120.0
DROP_IN = "[Service]\nWatchdogSec=3\nTimeoutAbortSec=2\nRestartSec=1\n"
"""A quick watchdog; a stopped process cannot take the SIGABRT it sends, so the
SIGKILL after it comes soon too."""
T = TypeVar("T")


class Container:
    """A root booted by systemd-nspawn; :meth:`__call__` runs a command inside it."""

    def __init__(self, root: Path, suite: str, log: Path) -> None:
        self.suite = suite
        with log.open("wb") as console:
            self._nspawn = subprocess.Popen(
                [
                    *("systemd-nspawn", "-D", str(root), "-b", "-q"),
                    *("--register=no", "--keep-unit", "--console=pipe"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env={"PATH": ROOT_PATH},
            )
        self.leader = until(self._init, BOOT_TIMEOUT, "the container's init")

    def _init(self) -> int | None:
        """The container's PID 1 as the host sees it: systemd-nspawn's child."""
        found = subprocess.run(
            ["pgrep", "-P", str(self._nspawn.pid)], capture_output=True, text=True, check=False
        )
        return int(found.stdout.split()[0]) if found.stdout.split() else None

    def __call__(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
            check=False,
            env={"PATH": ROOT_PATH, "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"},
        )
        assert not check or done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done

    def show(self, *properties: str) -> dict[str, str]:
        """``systemctl show gatewayd`` for these properties."""
        said = self("systemctl", "show", "gatewayd", *(f"-p{p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in said.splitlines() if "=" in line)

    def poweroff(self) -> None:
        self._nspawn.terminate()  # nspawn asks the container's systemd to halt
        try:
            self._nspawn.wait(BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._nspawn.kill()
            self._nspawn.wait(WAIT)


def until(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """``probe()`` until it gives something, looking a few times a second, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None or found is False:
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.2)  # a poll with a deadline: systemd sends nothing to wait on
    return found


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    registry.add_pair(VENDOR, MODEL)
    for suite in SUITES:
        registry.add(VENDOR, MODEL, f"SN-{suite}")
    return registry


@pytest.fixture(scope="module", params=list(SUITES))
def booted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, registry: Registry
) -> Iterator[tuple[Container, Broker]]:
    """The package installed on a fresh root of the suite, booted, with a broker and the
    simulator outside."""
    suite = request.param
    folder = tmp_path_factory.mktemp(f"boot-{suite}")
    broker = Broker(folder)
    broker.start()
    with Simulator(registry) as sim, fresh_root(suite, folder) as root:
        install(root, the_package())
        subprocess.run(["umount", str(root.path / "proc")], check=True)  # nspawn mounts its own
        (root.path / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        (root.path / "etc/gatewayd/config.toml").write_text(
            f'[gateway]\nid = "boot-{suite}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
            f'[exosite]\nurl = "{sim.url}"\nvendor = "{VENDOR}"\nmodel = "{MODEL}"\n'
        )
        drop_in = root.path / "etc/systemd/system/gatewayd.service.d"
        drop_in.mkdir(parents=True)
        (drop_in / "test.conf").write_text(DROP_IN)
        container = Container(root.path, suite, folder / "console.log")
        try:
            yield container, broker
        finally:
            container.poweroff()
            broker.stop()


def test_active_after_boot_with_a_status_line(booted: tuple[Container, Broker]) -> None:
    container, _ = booted
    container("systemctl", "is-system-running", "--wait", check=False)

    def connected() -> dict[str, str] | None:
        shown = container.show("ActiveState", "StatusText")
        return shown if "broker connected" in shown["StatusText"] else None

    state = until(connected, WAIT, "gatewayd active and connected")
    assert state["ActiveState"] == "active"
    assert state["StatusText"].startswith("broker connected; 0 activated")


def test_a_node_is_activated_and_its_journal_has_its_fields(
    booted: tuple[Container, Broker], registry: Registry
) -> None:
    container, broker = booted
    sn = f"SN-{container.suite}"
    with SimulatedNode(broker.host, broker.port, sn) as node:
        body = node.activate(timeout=WAIT)
    assert body["status"] == "activated"
    assert body["cik"] == dict(registry.issued())[sn]
    lines = container(
        "journalctl", "-u", "gatewayd", f"NODE_SN={sn}", "-o", "json", "--no-pager"
    ).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    activated = logs.MESSAGE_IDS["activated"].hex
    assert any(
        e.get("MESSAGE_ID") == activated and e.get("NODE_STATE") == "activated" for e in entries
    ), entries
    assert body["cik"] not in "\n".join(lines)


def test_an_import_is_in_the_journal_whether_gatewayd_runs_or_not(
    booted: tuple[Container, Broker], registry: Registry
) -> None:
    """The node activated above, exported, forgotten and imported through the running
    gatewayd; then forgotten again and imported, gatewayd stopped, by gatewayctl as the
    gatewayd user."""
    container, _ = booted
    sn = f"SN-{container.suite}"
    files = ("--passphrase-file", "/srv/bundle.pass", "/srv/gateway.bundle")
    container("sh", "-c", "umask 077; echo 'correct horse battery' > /srv/bundle.pass")
    container("gatewayctl", "export", *files)
    container("chown", "gatewayd:", "/srv/bundle.pass", "/srv/gateway.bundle")
    container("gatewayctl", "forget", "--yes", sn)
    said = container("gatewayctl", "import", *files)
    counted = "1 nodes imported into {}, 0 already held, 0 kept as stored, 0 refused\n"
    assert said.stdout == counted.format("the running gatewayd")
    container("gatewayctl", "forget", "--yes", sn)
    container("systemctl", "stop", "gatewayd")
    try:
        said = container("runuser", "-u", "gatewayd", "--", "gatewayctl", "import", *files)
        assert said.stdout == counted.format("/var/lib/gatewayd")
    finally:
        container("systemctl", "start", "gatewayd")
    imported = logs.MESSAGE_IDS["imported"].hex

    def both() -> list[str] | None:
        lines = container(
            "journalctl", f"MESSAGE_ID={imported}", f"NODE_SN={sn}", "-o", "json", "--no-pager"
        ).stdout.splitlines()
        by = sorted(json.loads(line).get("SYSLOG_IDENTIFIER", "") for line in lines)
        return by if len(by) >= 2 else None

    assert until(both, WAIT, "the two imports in the journal") == ["gatewayctl", "gatewayd"]
    shown = container("gatewayctl", "show", sn, "--reveal", "--json").stdout
    assert json.loads(shown)["cik"] == dict(registry.issued())[sn]
    until(
        lambda: "broker connected" in container.show("StatusText")["StatusText"],
        WAIT,
        "gatewayd connected again",
    )


def test_reload_keeps_the_main_pid(booted: tuple[Container, Broker]) -> None:
    container, _ = booted
    before = container.show("MainPID")["MainPID"]
    container("systemctl", "reload", "gatewayd")
    assert container.show("MainPID")["MainPID"] == before
    journal = container("journalctl", "-u", "gatewayd", "--no-pager").stdout
    assert "configuration reloaded from /etc/gatewayd/config.toml" in journal


def test_the_watchdog_restarts_a_stopped_main_loop(booted: tuple[Container, Broker]) -> None:
    container, _ = booted
    before = container.show("NRestarts", "MainPID")
    container("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "gatewayd")

    def restarted() -> dict[str, str] | None:
        shown = container.show("NRestarts", "MainPID", "ActiveState")
        again = int(shown["NRestarts"]) > int(before["NRestarts"])
        return shown if again and shown["ActiveState"] == "active" else None

    after = until(restarted, WAIT, "a restart by the watchdog")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert after["MainPID"] != before["MainPID"]
    journal = container("journalctl", "-u", "gatewayd", "--no-pager").stdout
    assert "Watchdog timeout" in journal


def test_stop_ends_with_success_and_exit_status_0(booted: tuple[Container, Broker]) -> None:
    container, _ = booted
    container("systemctl", "stop", "gatewayd")
    shown = container.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert (shown["ActiveState"], shown["Result"], shown["ExecMainStatus"]) == (
        "inactive",
        "success",
        "0",
    )


def test_a_bad_configuration_is_not_restarted(booted: tuple[Container, Broker]) -> None:
    """Exit status 2 is a bad file: restarting every RestartSec would not mend it."""
    container, _ = booted
    config = "/etc/gatewayd/config.toml"
    container("cp", config, f"{config}.good")
    container("sh", "-c", f"echo 'port = \"no\"' >> {config}")
    try:
        started = container("systemctl", "start", "gatewayd", check=False)
        assert started.returncode != 0
        # "failed", not "activating (auto-restart)": no restart is scheduled
        shown = until(
            lambda: (
                (s := container.show("ActiveState", "SubState", "NRestarts", "ExecMainStatus"))
                and (s if s["ActiveState"] == "failed" else None)
            ),
            WAIT,
            "the start to fail",
        )
        assert (shown["SubState"], shown["ExecMainStatus"]) == ("failed", "2")
        assert shown["NRestarts"] == "0"
    finally:
        container("mv", f"{config}.good", config)
