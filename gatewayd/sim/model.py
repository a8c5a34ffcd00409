"""What the simulator's registry keeps and answers: devices, the calls it counts, the
answers it gives, and the faults it can inject into them."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final

from gatewayd.core.secret import Secret
from gatewayd.sim.dataports import DataResult
from gatewayd.sim.devices import State

EXPIRY_SECONDS: Final = 24 * 60 * 60
"""A device still pending this long after it was added has expired."""

DROP: Final = 0
"""A scripted status that closes the connection without answering."""


class Fault(enum.StrEnum):
    """A scripted answer that is not a plain status: what a proxy, a load balancer or a
    broken link makes of Exosite's answer. ``ISSUED_*``: Exosite issues the CIK (when the
    device may be activated), and the gateway gets no clean 200 with it."""

    ISSUED_THEN_500 = "issued, then 500"
    ISSUED_THEN_502 = "issued, then a proxy's 502"
    ISSUED_THEN_504 = "issued, then a proxy's 504"
    ISSUED_THEN_DROPPED = "issued, then the connection closed unanswered"
    ISSUED_CUT_SHORT = "issued, the body cut after 10 of 40 bytes"
    ISSUED_DRIBBLED = "issued, the headers sent a byte at a time, for ever"
    ISSUED_AS_201 = "issued, answered 201"
    ISSUED_AS_202 = "issued, answered 202"
    ISSUED_WITH_NEWLINE = "issued, with a newline after the CIK"
    ISSUED_EMPTY = "issued, answered 200 with an empty body"
    PROXY_PAGE = "a proxy's HTML page, 200, the request never passed on"

    @property
    def issues(self) -> bool:
        return self.name.startswith("ISSUED_")


class Call(enum.StrEnum):
    """What a logged request asked for."""

    ACTIVATE = "activate"  # POST /provision/activate
    STATUS = "status"  # GET /provision/manage/model/<model>/<sn>
    REENABLE = "reenable"  # POST /provision/manage/model/<model>/<sn>, enable=true
    CHECK = "check"  # GET /onep:v1/stack/alias, X-Exosite-CIK: <cik>
    LOOKUP = "lookup"  # POST /onep:v1/rpc/process, {"auth": {"cik": <cik>}, ...}
    WRITE = "write"  # POST /onep:v1/stack/alias, X-Exosite-CIK: <cik>, <alias>=<value>&...
    READ = "read"  # GET /onep:v1/stack/alias?<alias>&..., X-Exosite-CIK: <cik>
    RECORD = "record"  # POST /onep:v1/stack/record, X-Exosite-CIK: <cik>


def device_rid(vendor: str, model: str, sn: str) -> str:
    """A device's resource id: 40 hex digits, the same for the same device in every run."""
    key = f"{vendor}\0{model}\0{sn}".encode()
    return hashlib.blake2b(key, digest_size=20).hexdigest()


@dataclass(frozen=True, slots=True)
class Device:
    vendor: str
    model: str
    sn: str
    state: State
    calls: int

    @property
    def rid(self) -> str:
        return device_rid(self.vendor, self.model, self.sn)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request: when it came (by the registry's clock), for whom, the answer, what it asked."""

    time: float
    sn: str
    status: int
    call: Call = Call.ACTIVATE


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer one activation request: ``status`` :data:`DROP` closes without answering."""

    status: int
    cik: Secret | None = None
    delay: float = 0.0
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class DataAnswer:
    """How to answer one request of the HTTP Data API: ``result`` when it was carried out
    (its status then is the answer's), ``device`` when the CIK was accepted."""

    status: int
    device: Device | None = None
    result: DataResult | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class ManageAnswer:
    """How to answer one management request; ``device`` is the device's view when it succeeded."""

    status: int
    device: Device | None = None
    delay: float = 0.0
