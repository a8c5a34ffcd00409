"""Boot storm and re-announce: a fleet of nodes, played by one MQTT client.

Boot storm: N nodes announce within one second; the simulator answers each
activation after ``latency``; gatewayd may have ``max_concurrent`` requests
out. Ideal makespan: N x latency / max_concurrent.

Re-announce: the same N, activated, announce again as fast as one client can
publish; gatewayd answers each from its keyring. The baseline is a minimal
paho client that answers every announce with a fixed payload: the broker round
trip with no work at all.

CPU per activation: gatewayd's CPU time over the boot storm, per node, beside
that of bench/pipeline.py over the same storm of other serials, in the same
run: the least a gateway could do per activation with the same libraries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from support import (
    WAIT,
    Emulating,
    Gatewayd,
    Rig,
    cpu_seconds,
    cpu_times,
    percentile,
    rig,
    rss_mib,
    separate_simulator,
    stolen,
)

from gatewayd.adapters.mqtt import new_client
from gatewayd.sim.processes import Output, stop

HERE = Path(__file__).resolve().parent


class Fleet:
    """One client that announces for every serial and hears every answer."""

    def __init__(self, port: int, serials: list[str], prefix: str = "gatewayd") -> None:
        self.serials = serials
        self.prefix = prefix
        self.sent: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self._done = threading.Condition()
        self.client = new_client("bench-fleet")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        info = self.client.subscribe(f"{prefix}/nodes/+/credentials", qos=1)
        ready = threading.Event()
        self.client.on_subscribe = lambda *_args: ready.set()
        ready.wait(5) if info[0] == 0 else None

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:  # noqa: ANN401
        now = time.monotonic()
        body = json.loads(message.payload)
        with self._done:
            sn = body["sn"]
            if body["status"] in {"activated", "rejected"} and sn not in self.answered:
                self.answered[sn] = now
                self.statuses[sn] = body["status"]
                self._done.notify_all()

    def announce(self, within: float) -> None:
        """Announce every serial once, spread evenly over ``within`` seconds (0: at once)."""
        self.answered.clear()
        start = time.monotonic()
        step = within / len(self.serials)
        for i, sn in enumerate(self.serials):
            if step:
                delay = start + i * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.sent[sn] = time.monotonic()
            self.client.publish(f"{self.prefix}/nodes/{sn}/announce", b"{}", qos=1)

    def wait(self, timeout: float = WAIT) -> bool:
        with self._done:
            return self._done.wait_for(lambda: len(self.answered) >= len(self.serials), timeout)

    def figures(self) -> dict[str, float]:
        latencies = [self.answered[sn] - self.sent[sn] for sn in self.serials]
        first, last = min(self.sent.values()), max(self.answered.values())
        return {
            "makespan": last - first,
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "throughput": len(self.serials) / (last - first),
        }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def echo_baseline(port: int, serials: list[str]) -> dict[str, float]:
    """The same re-announce, answered by a client that does nothing but answer."""
    echo = new_client("bench-echo")
    fixed = json.dumps({"status": "activated", "cik": "0" * 40}).encode()

    def answer(client: Any, _userdata: object, message: Any) -> None:  # noqa: ANN401
        sn = message.topic.split("/")[2]
        payload = fixed.replace(b'"status"', b'"sn": "' + sn.encode() + b'", "status"', 1)
        client.publish(f"gatewayd/nodes/{sn}/credentials", payload, qos=1)

    echo.on_message = answer
    echo.connect("127.0.0.1", port)
    echo.loop_start()
    echo.subscribe("gatewayd/nodes/+/announce", qos=1)
    time.sleep(0.5)  # a load generator's warm-up, not a synchronisation
    fleet = Fleet(port, serials)
    try:
        fleet.announce(within=0)
        if not fleet.wait():
            raise RuntimeError("the echo client did not answer every announce")
        return fleet.figures()
    finally:
        fleet.close()
        echo.loop_stop()
        echo.disconnect()


def run(
    n: int = 1000, latency: float = 0.05, concurrent: int = 8, repeats: int = 3
) -> dict[str, Any]:
    """The whole measurement ``repeats`` times, each on a new broker, simulator and state;
    the figures are those of the run with the median makespan."""
    runs = sorted((_once(n, latency, concurrent) for _ in range(repeats)), key=_makespan)
    middle = runs[len(runs) // 2]
    return middle | {
        "makespan_ratios": [r["makespan_ratio"] for r in runs],
        "steal": [r["steal"] for r in runs],
    }


def _makespan(figures: dict[str, Any]) -> float:
    return float(figures["makespan_ratio"])


def pipeline_baseline(r: Rig, url: str, serials: list[str], concurrent: int) -> float:
    """bench/pipeline.py's CPU time per activation over the same storm."""
    command = [sys.executable, str(HERE / "pipeline.py"), "--port", str(r.broker_port)]
    command += ["--url", url, "--folder", str(r.folder / "baseline"), "--workers", str(concurrent)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = Output("pipeline", process.stdout, r.folder / "pipeline.log")
    r.stack.callback(stop, process, output)
    output.wait_for("subscribed")
    fleet = Fleet(r.broker_port, serials, prefix="baseline")
    try:
        before = cpu_seconds(process.pid)
        fleet.announce(within=1.0)
        if not fleet.wait():
            raise RuntimeError(f"the pipeline answered {len(fleet.answered)} of {len(serials)}")
        return (cpu_seconds(process.pid) - before) / len(serials)
    finally:
        fleet.close()


def _once(n: int, latency: float, concurrent: int) -> dict[str, Any]:
    serials = [f"BENCH{i:05d}" for i in range(n)]
    others = [f"BASE{i:05d}" for i in range(n)]
    with rig() as r:
        url = separate_simulator(r, serials + others, latency)
        storm, again = _gatewayd_runs(r, url, serials, concurrent)
        baseline = echo_baseline(r.broker_port, serials)
        pipeline = pipeline_baseline(r, url, others, concurrent)
    ideal = n * latency / concurrent
    return {
        "n": n,
        "latency": latency,
        "max_concurrent": concurrent,
        "ideal": ideal,
        "makespan": storm["makespan"],
        "makespan_ratio": storm["makespan"] / ideal,
        "p50": storm["p50"],
        "p99": storm["p99"],
        "steal": storm["steal"],
        "rss_after_storm": storm["rss"],
        "cpu_storm": storm["cpu"],
        "cpu_activation": storm["cpu_activation"],
        "cpu_activation_baseline": pipeline,
        "cpu_ratio": storm["cpu_activation"] / pipeline,
        "reannounce_throughput": again["throughput"],
        "reannounce_p99": again["p99"],
        "baseline_throughput": baseline["throughput"],
        "baseline_p99": baseline["p99"],
        "reannounce_ratio": again["throughput"] / baseline["throughput"],
    }


def emulated(emulation: Emulating, n: int, latency: float, concurrent: int) -> dict[str, Any]:
    """The boot storm alone, gatewayd started under ``emulation`` (bench/pi.py)."""
    serials = [f"BENCH{i:05d}" for i in range(n)]
    with rig() as r:
        url = separate_simulator(r, serials, latency)
        gw = _started(r, url, serials, concurrent, emulation)
        fleet = Fleet(r.broker_port, serials)
        try:
            figures = _storm(gw, fleet)
        finally:
            fleet.close()
    ideal = n * latency / concurrent
    return {
        "n": n,
        "ideal": ideal,
        "makespan": figures["makespan"],
        "makespan_ratio": figures["makespan"] / ideal,
        "p99": figures["p99"],
        "cpu_activation": figures["cpu_activation"],
        "steal": figures["steal"],
    }


def _started(
    r: Rig, url: str, serials: list[str], concurrent: int, emulation: Emulating | None = None
) -> Gatewayd:
    config = r.config(
        url,
        exosite={"max_concurrent": concurrent, "max_rate": 10_000.0, "timeout": 30},
        nodes={"max_pending": 10 * len(serials)},
    )
    gw = r.gatewayd(config, emulation=emulation)
    gw.output.wait_for("subscribed to ")
    return gw


def _storm(gw: Gatewayd, fleet: Fleet) -> dict[str, Any]:
    """Every node of ``fleet`` announces within a second; the figures once all are answered."""
    before = cpu_times()
    cpu_before = cpu_seconds(gw.pid)
    fleet.announce(within=1.0)
    if not fleet.wait():
        raise RuntimeError(f"only {len(fleet.answered)} of {len(fleet.serials)} nodes answered")
    steal = stolen(before, cpu_times())
    cpu = cpu_seconds(gw.pid)
    storm: dict[str, Any] = fleet.figures() | {"rss": rss_mib(gw.pid), "cpu": cpu}
    storm["cpu_activation"] = (cpu - cpu_before) / len(fleet.serials)
    storm["steal"] = steal
    if set(fleet.statuses.values()) != {"activated"}:
        raise RuntimeError(f"not every node was activated: {set(fleet.statuses.values())}")
    return storm


def _gatewayd_runs(
    r: Rig, url: str, serials: list[str], concurrent: int
) -> tuple[dict[str, Any], dict[str, float]]:
    gw = _started(r, url, serials, concurrent)
    fleet = Fleet(r.broker_port, serials)
    try:
        storm = _storm(gw, fleet)
        fleet.announce(within=0)
        if not fleet.wait():
            raise RuntimeError("not every re-announce was answered")
        again = fleet.figures()
    finally:
        fleet.close()
    gw.process.terminate()
    gw.process.wait(WAIT)
    return storm, again


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
