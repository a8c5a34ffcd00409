"""gatewayctl status, republish, retry and forget against a running daemon.

The daemon runs as a subprocess with a real mosquitto and the simulator;
gatewayctl runs as a subprocess too and reaches the daemon over its control
socket. The socket itself is also tested alone: peer credentials, bad requests.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway

from gatewayd.adapters.keystore import FileKeyring, Keystore
from gatewayd.adapters.statedb import DB_NAME
from gatewayd.daemon.control import ControlError, ControlServer, Request, call
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]


@pytest.fixture
def keyring_backend() -> str:
    """The commands do not depend on the backend: gatewayd's own is enough here."""
    return "gatewayd.adapters.keystore.FileKeyring"


def ok_json(gw: Gateway, *args: str) -> dict[str, object]:
    done = gw.ctl(*args, "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert isinstance(reply, dict)
    return reply


def stored_cik(gw: Gateway, sn: str) -> str | None:
    keystore = Keystore(FileKeyring(gw.state_dir / "keyring"))
    cik = keystore.load(VENDOR, MODEL, sn)
    return None if cik is None else cik.reveal()


@pytest.mark.e2e
def test_status_reports_broker_counts_and_progress(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-S1")
    gw = gateway()
    gw.start()
    before = ok_json(gw, "status")
    assert before["broker"] == "connected"
    assert before["last_activation"] is None
    node("SN-S1").activate()
    node("SN-S2").activate()  # unknown to Exosite: rejected
    after = ok_json(gw, "status")
    nodes = after["nodes"]
    assert isinstance(nodes, dict)
    assert (nodes["activated"], nodes["rejected"], nodes["pending"]) == (1, 1, 0)
    last = after["last_activation"]
    assert isinstance(last, list)
    assert last[0] == "SN-S1"
    assert after["oldest_pending"] is None
    table = gw.ctl("status")
    assert table.returncode == 0, table.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in table.stdout.splitlines())
    assert (rows["broker"], rows["nodes activated"], rows["nodes rejected"]) == (
        "connected",
        "1",
        "1",
    )
    assert re.fullmatch(r"SN-S1 at 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows["last activation"])
    assert rows["oldest pending"] == "-"


@pytest.mark.e2e
def test_republish_sends_the_stored_credentials_without_asking_exosite(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-P1")
    gw = gateway()
    gw.start()
    n = node("SN-P1")
    cik = n.activate()["cik"]
    calls = registry.total_calls()
    done = gw.ctl("republish", "SN-P1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SN-P1: credentials published again"
    answer = n.next_answer(WAIT)
    assert (answer.topic, answer.body["cik"]) == (n.credentials_topic, cik)
    assert registry.total_calls() == calls
    gw.wait_for(r"node SN-P1: credentials republished")


@pytest.mark.e2e
def test_republish_of_a_node_that_is_not_activated_is_refused(
    gateway: MakeGateway, node: MakeNode
) -> None:
    gw = gateway()
    gw.start()
    node("SN-P2").activate()  # rejected: unknown serial
    done = gw.ctl("republish", "SN-P2")
    assert done.returncode == 1
    assert "not activated (it is rejected)" in done.stderr
    unknown = gw.ctl("republish", "NO-SUCH")
    assert unknown.returncode == 1
    assert "NO-SUCH: no such node" in unknown.stderr


@pytest.mark.e2e
def test_retry_clears_a_rejection_and_activates_without_a_reannounce(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    gw = gateway(nodes={"rejected_retry_after": 3600})
    gw.start()
    n = node("SN-T1")
    assert n.activate()["status"] == "rejected"
    registry.add(VENDOR, MODEL, "SN-T1")  # the operator adds the device in Portals
    reply = ok_json(gw, "retry", "SN-T1")
    assert reply == {"ok": True, "message": "SN-T1: activation requested (was rejected)"}
    answer = n.next_answer(WAIT)
    assert answer.body["status"] == "activated"
    assert answer.body["cik"] == stored_cik(gw, "SN-T1")
    gw.wait_for(r"node SN-T1: operator asked to retry now")
    refused = gw.ctl("retry", "SN-T1")
    assert refused.returncode == 1
    assert "already activated" in refused.stderr
    assert registry.calls("SN-T1") == 2


@pytest.mark.e2e
def test_forget_asks_first_then_deletes_record_and_cik(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-F1")
    gw = gateway()
    gw.start()
    node("SN-F1").activate()
    assert stored_cik(gw, "SN-F1") is not None
    # no terminal and no --yes: nothing happens
    unasked = gw.ctl("forget", "SN-F1")
    assert unasked.returncode == 2
    assert "--yes" in unasked.stderr
    assert stored_cik(gw, "SN-F1") is not None
    done = gw.ctl("forget", "SN-F1", "--yes")
    assert done.returncode == 0, done.stderr
    assert "SN-F1: forgotten (record and CIK deleted; it was activated)" in done.stdout
    assert stored_cik(gw, "SN-F1") is None
    assert json.loads(gw.ctl("list", "--json").stdout) == []
    nodes = ok_json(gw, "status")["nodes"]
    assert isinstance(nodes, dict)
    assert sum(nodes.values()) == 0
    gw.wait_for(r"WARNING .*node SN-F1: forgotten by the operator: record and CIK deleted")
    again = gw.ctl("forget", "SN-F1", "--yes")
    assert again.returncode == 1
    assert "no such node" in again.stderr


@pytest.mark.e2e
def test_commands_without_a_running_daemon_say_so(gateway: MakeGateway) -> None:
    gw = gateway()
    for args in (
        ("status",),
        ("retry", "SN-X"),
        ("republish", "SN-X"),
        ("forget", "SN-X", "--yes"),
    ):
        done = gw.ctl(*args)
        assert done.returncode == 1
        assert f"gatewayd is not running, or not listening on {gw.control_socket}" in done.stderr


@pytest.mark.e2e
def test_a_second_daemon_on_the_same_socket_does_not_start(
    tmp_path: Path, broker: Broker, simulator: Simulator, gateway: MakeGateway
) -> None:
    first = gateway()
    first.start()
    socket_path = str(first.control_socket)
    second = Gateway(
        tmp_path / "second", broker, simulator, gateway={"control_socket": socket_path}
    )
    second.start(wait_connected=False)
    assert second.stop(signum=None) == 1
    assert f"another gatewayd is listening on {socket_path}" in second.log_text()
    assert first.ctl("status").returncode == 0


@pytest.mark.e2e
def test_a_reannounce_after_forget_is_a_new_node(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    registry.add(VENDOR, MODEL, "SN-F2")
    gw = gateway()
    gw.start()
    n = node("SN-F2")
    n.activate()
    assert gw.ctl("forget", "SN-F2", "--yes").returncode == 0
    body = n.activate()
    # Exosite gives a CIK once: the serial must be re-enabled first
    assert (body["status"], body["http_status"]) == ("rejected", 409)


@pytest.mark.e2e
def test_a_command_its_caller_gave_up_on_is_never_carried_out(
    registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    """The main thread is held by a locked state database; a forget whose caller stops
    waiting after a second is answered "not done", and not done later either."""
    registry.add(VENDOR, MODEL, "SN-G1")
    registry.add(VENDOR, MODEL, "SN-G2")
    gw = gateway()
    gw.start()
    assert node("SN-G1").activate()["status"] == "activated"
    lock = sqlite3.connect(gw.state_dir / DB_NAME, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        node("SN-G2").announce()  # its record waits for the lock
        gw.wait_for(r"node SN-G2: announce received")
        given_up = gw.ctl("forget", "SN-G1", "--yes", "--timeout", "1")
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert given_up.returncode == 1
    assert "not done" in given_up.stderr
    gw.wait_for(r"gatewayctl forget given up by its caller: not carried out")
    records = {r["sn"]: r["state"] for r in json.loads(gw.ctl("list", "--json").stdout)}
    assert records["SN-G1"] == "activated"
    assert gw.stop() == 0


# ------------------------------------------------------------ the socket alone


@pytest.fixture
def server() -> Iterator[tuple[ControlServer, list[Request]]]:
    """A control server whose main thread answers every request with its command."""
    folder = Path(tempfile.mkdtemp(prefix="gwctl-"))
    folder.chmod(0o755)
    seen: list[Request] = []

    def submit(request: Request) -> None:
        seen.append(request)
        request.answer({"ok": True, "message": f"did {request.command} {request.sn}"})

    srv = ControlServer(folder / "control.sock", submit)
    yield srv, seen
    srv.close()
    folder.rmdir()


def test_a_request_reaches_the_main_thread_and_its_answer_comes_back(
    server: tuple[ControlServer, list[Request]],
) -> None:
    srv, seen = server
    assert call(srv.path, "retry", "SN1") == {"ok": True, "message": "did retry SN1"}
    assert [(r.command, r.sn) for r in seen] == [("retry", "SN1")]
    assert oct(srv.path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"hello\n", "not a JSON request"),
        (b"[1]\n", "expected a JSON object"),
        (b'{"command": "reboot"}\n', "unknown command 'reboot'"),
        (b'{"command": "forget"}\n', "forget needs a serial number"),
        (b'{"command": "retry", "sn": 5}\n', "retry needs a serial number"),
    ],
)
def test_a_bad_request_is_answered_and_reaches_nothing(
    server: tuple[ControlServer, list[Request]], line: bytes, said: str
) -> None:
    srv, seen = server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(srv.path))
        sock.sendall(line)
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is False
    assert said in reply["message"]
    assert seen == []


def test_another_user_is_refused_by_peer_credentials(
    server: tuple[ControlServer, list[Request]],
) -> None:
    """Even with the socket file opened to everyone, only root and the daemon's user pass."""
    srv, seen = server
    srv.path.chmod(0o666)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(WAIT)
                sock.connect(str(srv.path))
                sock.sendall(b'{"command": "status"}\n')
                os.write(write, sock.makefile("rb").readline())
        except BaseException as exc:  # noqa: BLE001 (the parent reports it)
            os.write(write, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    assert said.startswith(b"{"), f"the child failed: {said!r}"
    reply = json.loads(said)
    assert reply["ok"] is False
    assert "permission denied: only root and uid 0" in reply["message"]
    assert seen == []


def test_a_stale_socket_file_is_taken_over() -> None:
    folder = Path(tempfile.mkdtemp(prefix="gwctl-"))
    path = folder / "control.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listening: what a killed daemon leaves
    answered = threading.Event()

    def submit(request: Request) -> None:
        request.answer({"ok": True})
        answered.set()

    srv = ControlServer(path, submit)
    try:
        assert call(path, "status") == {"ok": True}
        assert answered.is_set()
    finally:
        srv.close()
    assert not path.exists()
    folder.rmdir()


def test_a_file_in_the_way_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        ControlServer(path, lambda r: None)
    assert path.read_text() == "not a socket"
