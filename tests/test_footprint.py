"""What an idle gatewayd has loaded: a library it needs only for a CIK is loaded with the
first one, not at start (bench/footprint.py measures the resident memory it saves).

A library's compiled extension is mapped into the process once it is imported, so
the daemon's ``/proc/PID/maps`` tells whether it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, VENDOR, Gateway

from gatewayd.adapters.keystore import FILE_KEYRING
from gatewayd.sim import Registry
from gatewayd.sim.node import SimulatedNode

pytestmark = pytest.mark.e2e

MakeGateway = Callable[..., Gateway]
MakeNode = Callable[..., SimulatedNode]


def loaded(gw: Gateway, package: str) -> bool:
    """Whether a file of ``package`` (its compiled extension) is mapped into gatewayd."""
    assert gw.process is not None
    maps = Path(f"/proc/{gw.process.pid}/maps").read_text()
    return f"/{package}/" in maps


@pytest.mark.parametrize("keyring_backend", [FILE_KEYRING])
def test_an_idle_gateway_loads_cryptography_with_the_first_cik_it_reads(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, node: MakeNode
) -> None:
    """Its keystore sealed with a key, every node activated: the CIKs are read only when a
    node announces again, and cryptography, which opens them, is loaded then."""
    key_file = tmp_path / "keyring.key"
    key_file.write_text(os.urandom(32).hex())
    registry.add(VENDOR, MODEL, "SN-F1")
    gw = gateway(keyring={"backend": FILE_KEYRING, "key_file": str(key_file)})
    gw.start()
    cik = node("SN-F1").activate()["cik"]
    assert gw.stop() == 0
    gw.start()
    assert not loaded(gw, "cryptography")
    assert node("SN-F1", client_id="again").activate()["cik"] == cik
    assert loaded(gw, "cryptography")
    assert gw.stop() == 0
