"""Durability under faults (issue 3): crashes, broker restarts, an Exosite outage, a stop.

Real parts only: mosquitto, the simulator over HTTP, gatewayd as a subprocess
and its own keyring files, read back afterwards with ``gatewayd.adapters.keystore``.
Faults land at random moments drawn from a seeded ``random.Random`` (the
seed is printed); every wait is for a log line, an answer or a process, with
a timeout. Each test prints its key figures: run with ``-s`` to see them.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEYRING_BACKENDS, MODEL, VENDOR, Gateway
from faults_support import (
    ACTIVATED_LINE,
    Fleet,
    MakeNode,
    count_lines,
    issued_by_sn,
    read_keyring,
    read_records,
    unanswered_at,
    wait_lines,
)

from gatewayd.core.model import State
from gatewayd.sim import Registry
from gatewayd.sim.node import FINAL
from gatewayd.sim.processes import Broker

pytestmark = pytest.mark.slow

MakeGateway = Callable[..., Gateway]
MakeFleet = Callable[..., Fleet]

SEED = 20261127
WAIT = 20.0
VENDOR_TOKEN = "vendor-token-for-the-fault-tests"


@pytest.fixture
def keyring_backend() -> str:
    """gatewayd's own backend only: these tests read its files back, and run once."""
    return KEYRING_BACKENDS["file"]


@pytest.fixture
def fleet(node: MakeNode) -> Iterator[MakeFleet]:
    """Makes fleets of connected nodes (see :class:`Fleet`); stops their drivers at teardown."""
    made: list[Fleet] = []

    def make(sns: list[str], **kwargs: object) -> Fleet:
        made.append(Fleet(node, sns, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for each in made:
        each.stop()


def serials(prefix: str, count: int, registry: Registry) -> list[str]:
    made = [f"{prefix}{i:03d}" for i in range(count)]
    for sn in made:
        registry.add(VENDOR, MODEL, sn)
    return made


def pause(seconds: float) -> None:
    """A deliberate delay that picks a fault's moment (never a wait for something)."""
    threading.Event().wait(seconds)


# ------------------------------------------------------------------ kill test

KILLS = 10
KILL_NODES = 300
KILL_LATENCY = 0.05
KILL_CONCURRENT = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Kill:
    after: int  # activations logged by this run of gatewayd before it was killed
    in_flight: int  # requests the simulator had received and not yet answered
    ciks_in_flight: int  # of which were 200s, a CIK on its way
    lost: int  # CIKs issued so far that no keyring file holds, new at this kill


@dataclasses.dataclass(frozen=True, slots=True)
class KillRun:
    gw: Gateway
    fleet: Fleet
    kills: list[Kill]
    lost: set[tuple[str, str]]  # (serial, CIK) issued and never stored
    seconds: float
    unanswered: str | None  # why the fleet was not all answered in time, if it was not


def kill_storm(
    registry: Registry,
    gateway: MakeGateway,
    fleet: MakeFleet,
    done: frozenset[str] = FINAL,
    **exosite: object,
) -> KillRun:
    """300 nodes announce; gatewayd is SIGKILLed 10 times mid-storm and restarted each time."""
    rng = random.Random(SEED)  # noqa: S311 (fault moments, not secrets)
    sns = serials("SN-K", KILL_NODES, registry)
    registry.latency = KILL_LATENCY
    gw = gateway(exosite={"max_rate": 100, "max_concurrent": KILL_CONCURRENT, **exosite})
    began = time.monotonic()
    gw.start()
    nodes = fleet(sns, done=done)
    nodes.start()
    kills: list[Kill] = []
    lost: set[tuple[str, str]] = set()
    for _ in range(KILLS):
        after = rng.randint(1, 20)
        wait_lines(gw, ACTIVATED_LINE, after, WAIT)
        pause(rng.uniform(0.0, KILL_LATENCY))  # a random phase against the requests' latency
        moment = time.time()
        assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
        in_flight = unanswered_at(registry, moment, KILL_LATENCY, until=time.time())
        stored = read_keyring(gw.state_dir, sns)
        gone = {(sn, cik) for sn, cik in registry.issued() if stored.get(sn) != cik}
        kills.append(
            Kill(after, len(in_flight), sum(s == 200 for _, s in in_flight), len(gone - lost))
        )
        lost |= gone
        gw.start()
    unanswered = None
    try:
        nodes.wait_final(40)
    except AssertionError as exc:  # the records tell more: the tests look at them first
        unanswered = str(exc)
    nodes.stop()
    assert gw.stop(signal.SIGTERM) == 0
    return KillRun(gw, nodes, kills, lost, time.monotonic() - began, unanswered)


def print_kills(run: KillRun, registry: Registry, label: str) -> None:
    kills = run.kills
    print(
        f"\n[{label}] seed {SEED}, {KILL_NODES} nodes, {len(kills)} SIGKILLs, {run.seconds:.1f} s"
    )
    for i, k in enumerate(kills, 1):
        print(
            f"  kill {i:2d}: after {k.after:2d} activations; {k.in_flight} requests in flight "
            f"({k.ciks_in_flight} carrying a CIK); {k.lost} CIKs lost"
        )
    inside = sum(k.in_flight > 0 for k in kills)
    losing = sum(k.lost > 0 for k in kills)
    print(
        f"  kills inside an activation (a request in flight): {inside} of {len(kills)}; "
        f"kills that lost a CIK: {losing}; CIKs issued {len(registry.issued())}, "
        f"lost {len(run.lost)}; requests {registry.total_calls()}; "
        f"announces {run.fleet.announces.total()}"
    )


def test_kill_storm_loses_no_cik_unaccounted(
    registry: Registry, gateway: MakeGateway, fleet: MakeFleet
) -> None:
    run = kill_storm(registry, gateway, fleet)
    print_kills(run, registry, "kill")
    sns = list(run.fleet.nodes)
    records = read_records(run.gw.state_dir)
    stored = read_keyring(run.gw.state_dir, sns)
    issued = issued_by_sn(registry)
    states = Counter(str(records[sn].state) if sn in records else "no record" for sn in sns)
    print(f"  node states: {dict(states)}")
    assert run.unanswered is None, run.unanswered

    # every CIK the simulator issued is in the keyring or belongs to a node in needs_reenable
    unaccounted = [
        (sn, str(records[sn].state), str(records[sn].reason))
        for sn, cik in registry.issued()
        if stored.get(sn) != cik and records[sn].state != "needs_reenable"
    ]
    assert unaccounted == [], f"CIKs neither stored nor in needs_reenable: {unaccounted[:10]}"
    # a node is in needs_reenable exactly when its CIK was lost; every other one is activated
    lost_sns = {sn for sn, _ in run.lost}
    assert {sn for sn in sns if records[sn].state == "needs_reenable"} == lost_sns
    assert {sn for sn in sns if records[sn].state == State.ACTIVATED} == set(sns) - lost_sns
    final = run.fleet.final()
    for sn in sns:
        assert len(issued[sn]) == 1, f"{sn}: {len(issued[sn])} CIKs issued"
        if sn in lost_sns:
            assert final[sn]["status"] == "rejected", (sn, final[sn])
        else:
            assert stored[sn] == issued[sn][0], sn
            assert final[sn]["status"] == "activated", (sn, final[sn])
            assert run.fleet.ciks(sn) == {issued[sn][0]}, sn
    # the window that cannot be avoided is the wire: a CIK that has reached gatewayd is
    # stored before anything else, so a kill loses the CIKs still on their way, and at
    # most a worker pool's worth more (answers that arrived and are being stored)
    beyond = [
        (i, k.lost, k.ciks_in_flight)
        for i, k in enumerate(run.kills, 1)
        if k.lost > k.ciks_in_flight + KILL_CONCURRENT
    ]
    assert beyond == [], (
        "kills (number, CIKs lost, CIKs on the wire) that lost CIKs gatewayd had already "
        f"received: {beyond}"
    )


def test_kill_storm_with_auto_reenable_activates_every_node(
    tmp_path: Path, registry: Registry, gateway: MakeGateway, fleet: MakeFleet
) -> None:
    token_file = tmp_path / "vendor-token"
    token_file.write_text(VENDOR_TOKEN + "\n")
    token_file.chmod(0o600)
    registry.set_vendor_token(VENDOR_TOKEN)
    run = kill_storm(
        registry,
        gateway,
        fleet,
        auto_reenable=True,
        vendor_token_file=str(token_file),
        done=frozenset({"activated"}),  # a node is done only once it holds its CIK
    )
    print_kills(run, registry, "kill, auto_reenable")
    sns = list(run.fleet.nodes)
    records = read_records(run.gw.state_dir)
    stored = read_keyring(run.gw.state_dir, sns)
    issued = issued_by_sn(registry)
    states = Counter(str(records[sn].state) if sn in records else "no record" for sn in sns)
    told_rejected = [sn for sn in sns if run.fleet.count(sn, "rejected")]
    reenabled = [sn for sn in sns if len(issued.get(sn, ())) > 1]
    print(
        f"  node states: {dict(states)}; re-enabled and activated anew: {len(reenabled)}; "
        f"nodes told 'rejected' on the way: {len(told_rejected)} {told_rejected[:5]}"
    )
    stuck = [
        (sn, str(records[sn].state), records[sn].last_error) if sn in records else (sn, None)
        for sn in sns
        if sn not in records or records[sn].state != State.ACTIVATED
    ]
    assert stuck == [], f"{len(stuck)} nodes not activated, e.g. {stuck[:3]}"
    assert run.unanswered is None, run.unanswered
    for sn in sns:
        assert stored.get(sn) == issued[sn][-1], sn
        assert issued[sn][-1] in run.fleet.ciks(sn), sn
    assert {sn for sn, _ in run.lost} <= set(reenabled)


# ---------------------------------------------------------------- broker test

BROKER_RESTARTS = 5
BROKER_NODES = 300
CONNECTED_LINE = r"connected to broker .* subscribed to"


def test_broker_restarts_during_a_storm(
    registry: Registry, broker: Broker, gateway: MakeGateway, fleet: MakeFleet
) -> None:
    rng = random.Random(SEED + 1)  # noqa: S311 (fault moments, not secrets)
    sns = serials("SN-B", BROKER_NODES, registry)
    registry.latency = 0.05
    gw = gateway(exosite={"max_rate": 15, "max_concurrent": 8})  # a storm of 20 s
    began = time.monotonic()
    gw.start()
    nodes = fleet(sns)
    nodes.start()
    restarts = []
    for i in range(BROKER_RESTARTS):
        target = count_lines(gw, ACTIVATED_LINE) + rng.randint(5, 20)
        wait_lines(gw, ACTIVATED_LINE, target, WAIT)
        down = rng.uniform(0.2, 1.0)
        broker.stop()
        pause(down)
        broker.start()
        restarts.append((target, round(down, 2)))
        # each restart cuts a live link: the next one waits for gatewayd to be back
        wait_lines(gw, CONNECTED_LINE, i + 2, WAIT)
        assert gw.process is not None
        assert gw.process.poll() is None, "gatewayd exited during a broker restart"
    nodes.wait_final(60)
    nodes.stop()
    seconds = time.monotonic() - began
    assert gw.process is not None
    assert gw.process.poll() is None, "gatewayd exited during the broker restarts"
    disconnects = count_lines(gw, r"disconnected from the broker")
    connects = count_lines(gw, CONNECTED_LINE)
    republished = count_lines(gw, r"credentials republished")
    assert gw.stop(signal.SIGTERM) == 0
    print(
        f"\n[broker] seed {SEED + 1}, {BROKER_NODES} nodes, {seconds:.1f} s; restarts "
        f"(after activation #, seconds down): {restarts}; gatewayd disconnects {disconnects}, "
        f"connects {connects}; announces {nodes.announces.total()}; "
        f"credentials republished {republished}; requests {registry.total_calls()}"
    )
    issued = issued_by_sn(registry)
    final = nodes.final()
    wrong = [sn for sn in sns if final[sn]["status"] != "activated"]
    assert wrong == [], [final[sn] for sn in wrong[:5]]
    for sn in sns:
        assert issued[sn] == [final[sn]["cik"]], sn
        assert registry.calls(sn) == 1, f"{sn}: {registry.calls(sn)} activation requests"
    records = read_records(gw.state_dir)
    assert Counter(str(records[sn].state) for sn in sns) == Counter({"activated": len(sns)})
    stored = read_keyring(gw.state_dir, sns)
    assert stored == {sn: issued[sn][0] for sn in sns}
    assert disconnects >= BROKER_RESTARTS
    assert connects >= BROKER_RESTARTS + 1


# ---------------------------------------------------------------- outage test

OUTAGE_NODES = 50


def test_exosite_outage_with_a_restart_then_recovery(
    registry: Registry, gateway: MakeGateway, fleet: MakeFleet
) -> None:
    sns = serials("SN-O", OUTAGE_NODES, registry)
    registry.error_rate = 1.0
    gw = gateway(exosite={"retry_base": 0.5, "retry_cap": 3.0})
    gw.start()
    nodes = fleet(sns, reannounce=False)
    nodes.start()

    def pendings(count: int) -> Callable[[Fleet], bool]:
        return lambda f: all(f.count(sn, "pending") >= count for sn in sns)

    nodes.wait_until(pendings(2), WAIT, "every node told pending twice")
    assert gw.stop(signal.SIGTERM) == 0
    gw.start()
    nodes.wait_until(pendings(5), WAIT, "every node told pending five times")
    failed = registry.total_calls()
    recovered = time.time()
    registry.error_rate = 0.0
    nodes.wait_final(WAIT)
    assert gw.stop(signal.SIGTERM) == 0

    successes = sorted(
        e.time - recovered for e in registry.request_log() if e.status == 200 and e.time > recovered
    )
    spread = successes[-1] - successes[0]
    buckets = Counter(int(t / 0.5) for t in successes)
    print(
        f"\n[outage] {OUTAGE_NODES} nodes; {failed} requests answered 503 across one restart; "
        f"after recovery: {len(successes)} activations from {successes[0]:.2f} s to "
        f"{successes[-1]:.2f} s (spread {spread:.2f} s); per 0.5 s: "
        f"{[buckets[i] for i in range(max(buckets) + 1)]}; announces {nodes.announces.total()}"
    )
    issued = issued_by_sn(registry)
    final = nodes.final()
    for sn in sns:
        assert nodes.announces[sn] == 1, f"{sn} announced {nodes.announces[sn]} times"
        assert final[sn]["status"] == "activated", final[sn]
        assert issued[sn] == [final[sn]["cik"]], sn
    records = read_records(gw.state_dir)
    assert Counter(str(records[sn].state) for sn in sns) == Counter({"activated": len(sns)})
    assert read_keyring(gw.state_dir, sns) == {sn: issued[sn][0] for sn in sns}
    assert len(successes) == OUTAGE_NODES
    assert spread > 1.0
    assert max(buckets.values()) < OUTAGE_NODES / 2


# ------------------------------------------------------- storm + SIGTERM test

STORM_NODES = 200


def test_sigterm_during_a_storm_leaves_every_node_activated_or_pending(
    registry: Registry, gateway: MakeGateway, fleet: MakeFleet
) -> None:
    rng = random.Random(SEED + 2)  # noqa: S311 (fault moments, not secrets)
    sns = serials("SN-T", STORM_NODES, registry)
    registry.latency = 0.1
    gw = gateway(exosite={"max_rate": 100, "max_concurrent": 4})
    gw.start()
    nodes = fleet(sns, reannounce=False)
    nodes.start()
    wait_lines(gw, r"node \S+: announce received", STORM_NODES, WAIT)
    after = rng.randint(20, 80)
    wait_lines(gw, ACTIVATED_LINE, after, WAIT)
    moment = time.time()
    in_flight = unanswered_at(registry, moment, 0.1)
    code = gw.stop(signal.SIGTERM)
    stopped = time.time() - moment
    assert code == 0

    records = read_records(gw.state_dir)
    stored = read_keyring(gw.state_dir, sns)
    issued = issued_by_sn(registry)
    states = Counter(str(records[sn].state) if sn in records else "no record" for sn in sns)
    print(
        f"\n[sigterm] seed {SEED + 2}, {STORM_NODES} nodes; SIGTERM after {after} activations "
        f"with {len(in_flight)} requests in flight; exit {code} after {stopped:.2f} s; "
        f"states {dict(states)}; CIKs issued {len(registry.issued())}, stored {len(stored)}"
    )
    bad = []
    for sn in sns:
        record = records.get(sn)
        if record is None:
            bad.append((sn, "no record"))
        elif record.state == State.ACTIVATED:
            if stored.get(sn) != issued.get(sn, [None])[0]:
                bad.append((sn, "activated without its CIK stored"))
        elif record.state != State.PENDING or record.next_attempt is None:
            bad.append((sn, f"{record.state}, next_attempt {record.next_attempt}"))
    assert bad == [], bad[:10]
    assert {sn for sn, _ in registry.issued()} == set(stored), (
        "a CIK issued before the stop is lost"
    )
    assert 0 < states["activated"] < STORM_NODES, "the SIGTERM did not land inside the storm"

    # and a restart picks the pending nodes up by itself: no node announces again
    gw.start()
    nodes.wait_final(WAIT)
    nodes.stop()
    assert gw.stop(signal.SIGTERM) == 0
    issued = issued_by_sn(registry)
    final = nodes.final()
    for sn in sns:
        assert nodes.announces[sn] == 1
        assert issued[sn] == [final[sn]["cik"]], (sn, final[sn])
    print(f"  after a restart: {len(final)} nodes activated, none announced again")
