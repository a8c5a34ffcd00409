"""Real parts for the integration tests: mosquitto, the simulator, the daemon.

Every broker is a mosquitto process on a free port; the Exosite simulator is a
real HTTP server; the daemon runs as a subprocess whose stderr is read line by
line, so tests wait for what it says, never for a fixed time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tomlfile

from gatewayd.adapters import redaction
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.processes import Broker, Output

if TYPE_CHECKING:  # paho, loaded only by the tests that start nodes
    from gatewayd.sim.node import SimulatedNode

WAIT = 20.0
"""Upper bound for anything a test waits for; a healthy run needs far less."""

VENDOR = "acme"
MODEL = "thermo-v1"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Gateway:
    """gatewayd as a subprocess, with a config file written for the test."""

    def __init__(
        self, folder: Path, broker: Broker, sim: Simulator, **sections: dict[str, object]
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.state_dir = folder / "state"
        self.config_path = folder / "config.toml"
        self.log_path = folder / "gatewayd.log"
        self.control_socket = folder / "control.sock"
        self.env = dict(os.environ, XDG_DATA_HOME=str(folder / "xdg"), PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(THIRD_PARTY), os.environ.get("PYTHONPATH")])
        )
        self.env.pop("JOURNAL_STREAM", None)
        self.env.pop("INVOCATION_ID", None)
        config: dict[str, dict[str, object]] = {
            "gateway": {
                "id": "gw1",
                "state_dir": str(self.state_dir),
                "log_level": "debug",
                "control_socket": str(self.control_socket),
            },
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 10},
            "exosite": {
                "url": sim.url,
                "vendor": VENDOR,
                "model": MODEL,
                "models": [MODEL, "hygro"],
                "timeout": 3,
                "max_rate": 100,
                "retry_base": 0.2,
                "retry_cap": 1.0,
            },
            "keyring": {},
            "nodes": {},
        }
        self.config = config
        self.rewrite(**sections)
        self.process: subprocess.Popen[bytes] | None = None
        self.watcher: Output | None = None

    def rewrite(self, **sections: dict[str, object]) -> None:
        """Change keys of the configuration file (a running daemon sees them on SIGHUP)."""
        for name, values in sections.items():
            self.config[name].update(values)
        self.config_path.write_text(tomlfile.dumps(self.config))

    def start(self, *, wait_connected: bool = True) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        self.watcher = Output("gatewayd", self.process.stderr, self.log_path)
        if wait_connected:
            self.wait_for("subscribed to ")

    def wait_for(self, pattern: str, timeout: float = WAIT) -> str:
        assert self.watcher is not None
        return self.watcher.wait_for(pattern, timeout)

    def send(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, signum: int | None = signal.SIGTERM) -> int:
        """Stop the daemon (``None``: wait for it to stop) and return its exit code."""
        if self.process is None:
            return 0
        if signum is not None and self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(WAIT)
        assert self.watcher is not None
        self.watcher.close()
        self.process = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def ctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """gatewayctl as a subprocess, on this gateway's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "gatewayd.ctl.main", "--config", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )


# ------------------------------------------------------------------ fixtures


@contextlib.contextmanager
def root_logging_restored() -> Iterator[None]:
    """The root logger's handlers and level as they were, whatever the block set up."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def leaked(logs: list[Path], secrets: frozenset[str]) -> list[tuple[str, str]]:
    """The logs (name, folder) in which any of ``secrets`` appears."""
    return [
        (path.name, path.parent.name)
        for path in logs
        if (text := path.read_text(errors="replace")) and any(s in text for s in secrets)
    ]


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """At the end of the run, every log any test wrote (gatewayd's, mosquitto's, the
    demo's) is searched for every CIK the simulators issued and every token and password
    used (gatewayd's redaction set holds the newest of them: :data:`redaction.MAX_CIKS`
    CIKs, every token and password)."""
    yield
    logs = sorted(tmp_path_factory.getbasetemp().rglob("*.log"))
    secrets = redaction.known()
    leaks = leaked(logs, secrets)
    said = f"log sweep: {len(logs)} log files searched for {len(secrets)} secrets"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{said}")
    assert leaks == [], f"secrets found in logs: {leaks[:10]}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.add_pair(VENDOR, MODEL)
    registry.add_pair(VENDOR, "hygro")
    return registry


@pytest.fixture
def simulator(registry: Registry) -> Iterator[Simulator]:
    with Simulator(registry) as sim:
        yield sim


KEYRING_BACKENDS = {
    "file": "gatewayd.adapters.keystore.FileKeyring",
    "thirdparty": "jsonkeyring.JsonKeyring",
}
THIRD_PARTY = Path(__file__).resolve().parent / "thirdparty"
"""Where the third-party backend lives: on the daemon's PYTHONPATH."""


@pytest.fixture(params=list(KEYRING_BACKENDS))
def keyring_backend(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test runs with gatewayd's backend and with a third-party one."""
    return KEYRING_BACKENDS[request.param]


@pytest.fixture
def gateway(
    tmp_path: Path, broker: Broker, simulator: Simulator, keyring_backend: str
) -> Iterator[Callable[..., Gateway]]:
    """Makes gateways; at teardown stops them and checks no issued CIK reached a log."""
    made: list[Gateway] = []

    def make(**sections: dict[str, object]) -> Gateway:
        sections.setdefault("keyring", {"backend": keyring_backend})
        gw = Gateway(tmp_path / f"gw{len(made)}", broker, simulator, **sections)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop(signal.SIGKILL)
    logs = "".join(gw.log_text() for gw in made)
    leaked = [sn for sn, cik in simulator.registry.issued() if cik in logs]
    assert leaked == [], f"CIKs of {leaked} appear in gatewayd's log"


@pytest.fixture
def node(broker: Broker) -> Iterator[Callable[..., SimulatedNode]]:
    from gatewayd.sim.node import SimulatedNode  # noqa: PLC0415 (paho, see above)

    made: list[SimulatedNode] = []

    def make(sn: str, **kwargs: object) -> SimulatedNode:
        n = SimulatedNode(broker.host, broker.port, sn, **kwargs)  # type: ignore[arg-type]
        n.connect()
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A NOTIFY_SOCKET datagram socket, as systemd gives a Type=notify service."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(WAIT)
        yield sock, path


def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    """Every datagram received up to and including the first that contains ``wanted``."""
    seen = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return seen
