"""examples/mosquitto/ as it ships, on a real mosquitto: TLS, accounts, and the ACL.

The test makes a CA, the broker's certificate and client certificates, writes
a password file with mosquitto_passwd, and starts mosquitto on the example's
configuration with only the paths and ports changed.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, WAIT, Gateway
from pki import Pki, make_pki

from gatewayd.adapters import redaction
from gatewayd.adapters.mqtt import new_client
from gatewayd.sim import Registry, Simulator
from gatewayd.sim.node import SimulatedNode
from gatewayd.sim.processes import Broker, free_port

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "mosquitto"
GATEWAY_PASSWORD = "gw-secret-6502"
NODE_PASSWORDS = {"SN-A": "node-a-secret-8080", "SN-B": "node-b-secret-z80"}
for _password in (GATEWAY_PASSWORD, *NODE_PASSWORDS.values(), "hunter2"):
    redaction.remember(_password)  # the end-of-run log sweep looks for them too


@dataclass
class SecureBroker:
    broker: Broker
    password_port: int
    certificate_port: int
    pki: Pki


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """mosquitto on examples/mosquitto/gatewayd.conf and gatewayd.acl."""
    pki = make_pki(tmp_path, ["gatewayd", "gatewayd-answers", "SN-CERT"])
    passwd = tmp_path / "gatewayd.passwd"
    # gatewayd's two connections, each its account (the same password), as README.md says
    accounts = {"gatewayd": GATEWAY_PASSWORD, "gatewayd-answers": GATEWAY_PASSWORD}
    accounts |= NODE_PASSWORDS
    for user, password in accounts.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwd), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    acl = tmp_path / "gatewayd.acl"
    acl.write_text((EXAMPLES / "gatewayd.acl").read_text())
    password_port, certificate_port = free_port(), free_port()
    conf = (EXAMPLES / "gatewayd.conf").read_text()
    conf = conf.replace("/etc/mosquitto/certs/", f"{tmp_path}/").replace(
        "/etc/mosquitto/", f"{tmp_path}/"
    )
    conf = conf.replace("listener 8883", f"listener {password_port} 127.0.0.1")
    conf = conf.replace("listener 8884", f"listener {certificate_port} 127.0.0.1")
    assert re.findall(r"^listener \d+ 127\.0\.0\.1$", conf, re.MULTILINE) == [
        f"listener {password_port} 127.0.0.1",
        f"listener {certificate_port} 127.0.0.1",
    ]
    broker = Broker(tmp_path, listeners=conf)
    broker.host, broker.port = "localhost", password_port
    broker.start()
    yield SecureBroker(broker, password_port, certificate_port, pki)
    broker.stop()


def connack(port: int, tls: ssl.SSLContext | None, user: str | None, password: str | None) -> int:
    """The reason code of a CONNACK from the broker on ``port``; -1 if none came.

    The client's loop runs on this thread, so that a TLS alert is an exception here
    rather than in a thread of paho's.
    """
    client = new_client("probe")
    if user is not None:
        client.username_pw_set(user, password)
    if tls is not None:
        client.tls_set_context(tls)
    codes: list[int] = []

    def on_connect(
        _client: object, _userdata: object, _flags: object, code: object, *_: object
    ) -> None:
        codes.append(int(getattr(code, "value", code)))  # type: ignore[call-overload]

    client.on_connect = on_connect
    deadline = time.monotonic() + 5.0  # a refused TLS handshake sends no CONNACK at all
    try:
        client.connect("localhost", port)
        while not codes and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != 0:  # the broker closed the connection
                break
    except (OSError, ssl.SSLError):
        return -1
    finally:
        with contextlib.suppress(OSError):  # paho 1.6.1 writes to a socket the broker closed
            client.disconnect()
    return codes[0] if codes else -1


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.add_pair(VENDOR, MODEL)
    for sn in ("SN-A", "SN-B", "SN-C", "SN-CERT"):
        registry.add(VENDOR, MODEL, sn)
    return registry


@pytest.fixture
def keyring_backend() -> str:
    return "gatewayd.adapters.keystore.FileKeyring"


MakeGateway = Callable[..., Gateway]


def test_the_example_acl_binds_every_node_to_its_own_topics(
    tmp_path: Path,
    secure_broker: SecureBroker,
    simulator: Simulator,
    registry: Registry,
    gateway: MakeGateway,
) -> None:
    sb = secure_broker
    gw = _secure_gateway(tmp_path, sb, gateway)  # TLS, its account: it subscribed to announces

    def node(sn: str, **kwargs: object) -> SimulatedNode:
        made = SimulatedNode("localhost", sb.password_port, sn, tls=sb.pki.context(), **kwargs)  # type: ignore[arg-type]
        made.connect()
        return made

    a = node("SN-A", username="SN-A", password=NODE_PASSWORDS["SN-A"])
    b = node("SN-B", username="SN-B", password=NODE_PASSWORDS["SN-B"])
    try:
        assert a.activate(timeout=WAIT)["status"] == "activated"
        # A listens on B's credentials topic; B gets activated; A hears nothing of it
        a.subscribe(b.credentials_topic)
        cik_b = b.activate(timeout=WAIT)["cik"]
        assert gw.ctl("republish", "SN-A").returncode == 0  # published after B's
        heard = a.next_answer(WAIT)
        assert heard.topic == a.credentials_topic
        assert cik_b not in str(heard.body)
        # A announces as C: the broker drops it, gatewayd never sees it
        a.publish("gatewayd/nodes/SN-C/announce", b"{}")
        a.announce()  # after it, on the same connection: gatewayd sees this one
        gw.wait_for(r"node SN-A: announce received")
        assert "SN-C" not in gw.log_text()
        assert registry.calls("SN-C") == 0
    finally:
        a.close()
        b.close()
    # a node with a client certificate, on the certificate listener
    with SimulatedNode(
        "localhost", sb.certificate_port, "SN-CERT", tls=sb.pki.context("SN-CERT")
    ) as cert_node:
        assert cert_node.activate(timeout=WAIT)["status"] == "activated"
    # no account, a wrong password, no TLS: refused
    assert connack(sb.password_port, sb.pki.context(), None, None) == 135  # not authorized
    assert connack(sb.password_port, sb.pki.context(), "SN-A", "wrong") in {134, 135}
    assert connack(sb.password_port, None, "SN-A", NODE_PASSWORDS["SN-A"]) == -1
    assert connack(sb.certificate_port, sb.pki.context(), None, None) == -1  # no certificate
    assert GATEWAY_PASSWORD not in gw.log_text()


def test_gatewayd_authenticates_with_a_client_certificate(
    secure_broker: SecureBroker, registry: Registry, gateway: MakeGateway
) -> None:
    sb = secure_broker
    pki = sb.pki
    answers_pem = pki.path("gatewayd-answers.pem").read_text()
    answers = pki.path("answers-with-key.pem")  # certificate and key in one file
    answers.write_text(answers_pem + pki.path("gatewayd-answers.key").read_text())
    gw = gateway(
        mqtt={
            "host": "localhost",
            "port": sb.certificate_port,
            "tls": {
                "ca_file": str(pki.path("ca.pem")),
                "cert_file": str(pki.path("gatewayd.pem")),
                "key_file": str(pki.path("gatewayd.key")),
                "answers_cert_file": str(answers),
            },
        }
    )
    gw.start()
    with SimulatedNode(
        "localhost", sb.certificate_port, "SN-CERT", tls=pki.context("SN-CERT")
    ) as n:
        assert n.activate(timeout=WAIT)["status"] == "activated"


def test_a_name_that_does_not_match_the_certificate_is_refused(
    secure_broker: SecureBroker, gateway: MakeGateway
) -> None:
    """The broker's certificate names localhost, not 127.0.0.1."""
    sb = secure_broker
    gw = gateway(
        mqtt={
            "host": "127.0.0.1",
            "port": sb.password_port,
            "tls": {"ca_file": str(sb.pki.path("ca.pem"))},
        }
    )
    gw.start(wait_connected=False)
    gw.wait_for(r"broker 127\.0\.0\.1:\d+ unreachable: .*IP address mismatch")


def test_a_password_in_plain_text_to_another_machine_is_refused(
    tmp_path: Path, gateway: MakeGateway
) -> None:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("hunter2\n")
    gw = gateway(
        mqtt={"host": "192.0.2.10", "username": "gatewayd", "password_file": str(password_file)}
    )
    gw.start(wait_connected=False)
    assert gw.stop(signum=None) == 2
    assert "mqtt.tls: required to send the broker password to 192.0.2.10" in gw.log_text()
    insecure = gateway(
        mqtt={
            "host": "192.0.2.10",
            "username": "gatewayd",
            "answers_username": "gatewayd-answers",
            "password_file": str(password_file),
            "allow_insecure": True,
        }
    )
    insecure.start(wait_connected=False)
    insecure.wait_for(r"WARNING .*the broker password goes to 192\.0\.2\.10 in plain text")
    assert "hunter2" not in insecure.log_text()


def _secure_gateway(tmp_path: Path, sb: SecureBroker, gateway: MakeGateway) -> Gateway:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(GATEWAY_PASSWORD + "\n")
    gw = gateway(
        mqtt={
            "host": "localhost",
            "port": sb.password_port,
            "username": "gatewayd",
            "answers_username": "gatewayd-answers",
            "password_file": str(password_file),
            "tls": {"ca_file": str(sb.pki.path("ca.pem"))},
        }
    )
    gw.start()
    return gw


def mosquitto_sub(sb: SecureBroker, sn: str, *options: str) -> subprocess.CompletedProcess[str]:
    """mosquitto_sub as node ``sn``, over TLS, on its credentials topic, persistent (-c)."""
    return subprocess.run(
        [
            *("mosquitto_sub", "-h", "localhost", "-p", str(sb.password_port)),
            *("--cafile", str(sb.pki.path("ca.pem")), "-u", sn, "-P", NODE_PASSWORDS[sn]),
            *("-c", "-i", f"session-of-{sn}", "-q", "1", "-t", f"gatewayd/nodes/{sn}/credentials"),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_no_node_can_take_gatewayds_connection_or_another_nodes_session(
    tmp_path: Path, secure_broker: SecureBroker, registry: Registry, gateway: MakeGateway
) -> None:
    sb = secure_broker
    gw = _secure_gateway(tmp_path, sb, gateway)

    def node(sn: str, **kwargs: object) -> SimulatedNode:
        made = SimulatedNode(
            "localhost", sb.password_port, sn, tls=sb.pki.context(), username=sn,
            password=NODE_PASSWORDS[sn], **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        made.connect()
        return made

    b = node("SN-B")
    cik_b = b.activate(timeout=WAIT)["cik"]
    b.close()
    # SN-B's firmware keeps a persistent session: its credentials wait there while it is away
    assert mosquitto_sub(sb, "SN-B", "-E").returncode == 0
    assert gw.ctl("republish", "SN-B").returncode == 0
    gw.wait_for(r"node SN-B: credentials republished")
    # SN-A names gatewayd's client id, then SN-B's session's: neither is taken over
    intruders = [node("SN-A", client_id="gatewayd-gw1"), node("SN-A", client_id="session-of-SN-B")]
    a = intruders[0]
    try:
        assert a.activate(timeout=WAIT)["status"] == "activated"  # gatewayd is still there
        assert "disconnected from the broker" not in gw.log_text()
        # a packet larger than any announce: the broker refuses it, gatewayd never sees it
        a.publish(a.announce_topic, b"{" + b" " * 20_000 + b"}", wait=False)
    finally:
        for each in intruders:
            each.close()
    got = mosquitto_sub(sb, "SN-B", "-C", "1", "-W", "10")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["cik"] == cik_b  # SN-B's session kept its credentials
    assert "too long" not in gw.log_text()
    assert "SN-A: announce ignored" not in gw.log_text()


def test_one_account_for_both_connections_is_an_error_that_says_what_to_set(
    tmp_path: Path, secure_broker: SecureBroker, gateway: MakeGateway
) -> None:
    """Under use_username_as_clientid, gatewayd's two connections under one account have
    one client id, and the broker closes each when the other connects."""
    sb = secure_broker
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(GATEWAY_PASSWORD + "\n")
    gw = gateway(
        mqtt={
            "host": "localhost",
            "port": sb.password_port,
            "username": "gatewayd",
            "password_file": str(password_file),
            "tls": {"ca_file": str(sb.pki.path("ca.pem"))},
        }
    )
    gw.start(wait_connected=False)
    error = gw.wait_for(r"ERROR .*client id.*give the answers connection an account")
    assert "mqtt.answers_username" in error
    assert gw.log_text().count("give the answers connection an account") == 1  # said once
