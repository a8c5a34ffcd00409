"""A local stand-in for Exosite's provisioning API, for tests and firmware development,
with a simulated node, the demo, and the child processes they start (a private
mosquitto among them).

It imports the core and the adapters (the broker link's helpers), never the daemon;
the daemon never imports it. Start one from Python::

    registry = Registry()
    registry.add("acme", "thermo-v1", "ABC123")
    with Simulator(registry) as sim:
        requests.post(f"{sim.url}/provision/activate", data={...})

or from a shell with ``python -m gatewayd.sim``. With a vendor token
(``Registry(vendor_token=...)``, or ``--vendor-token-file``) it also answers the
vendor management API. A node's CIK works with the RPC lookup and the HTTP Data
API: see :mod:`gatewayd.sim.server`.
"""

from gatewayd.sim.devices import State
from gatewayd.sim.model import (
    DROP,
    EXPIRY_SECONDS,
    Answer,
    Call,
    DataAnswer,
    Device,
    Fault,
    LogEntry,
    ManageAnswer,
    device_rid,
)
from gatewayd.sim.registry import Registry
from gatewayd.sim.server import Simulator
from gatewayd.sim.wire import Request, Response, Route

__all__ = [
    "DROP",
    "EXPIRY_SECONDS",
    "Answer",
    "Call",
    "DataAnswer",
    "Device",
    "Fault",
    "LogEntry",
    "ManageAnswer",
    "Registry",
    "Request",
    "Response",
    "Route",
    "Simulator",
    "State",
    "device_rid",
]
