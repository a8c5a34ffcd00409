"""The baseline of the boot storm's CPU time: the least a gateway could do for each
activation with gatewayd's own libraries, in a process of its own.

For each announce paho receives, one of ``workers`` threads (each with its own
kept-alive ``requests.Session``) POSTs the activation to the simulator, writes
the CIK to a file of its own and fsyncs it, inserts a row into SQLite (WAL,
synchronous=FULL, one commit per row) and publishes the credentials with paho.
No checks, no state machine, no write-ahead, no retries: what is left is the
cost of the libraries and the system calls.

    python bench/pipeline.py --port BROKER --url SIMULATOR --folder DIR
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from gatewayd.adapters.mqtt import new_client

PREFIX = "baseline"
VENDOR = "acme"
MODEL = "thermo-v1"


class Pipeline:
    def __init__(self, port: int, url: str, folder: Path, workers: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.url = f"{url}/provision/activate"
        self.database = sqlite3.connect(folder / "baseline.sqlite3", check_same_thread=False)
        self.database.execute("PRAGMA journal_mode=WAL")
        self.database.execute("PRAGMA synchronous=FULL")
        self.database.execute("CREATE TABLE IF NOT EXISTS node (sn TEXT PRIMARY KEY, state TEXT)")
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.client = new_client("bench-baseline")
        self.client.on_message = self.on_message
        for _ in range(workers):
            threading.Thread(target=self.work, daemon=True).start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"{PREFIX}/nodes/+/announce", qos=1)
        subscribed.wait(10)

    def on_message(self, _client: object, _userdata: object, message: Any) -> None:  # noqa: ANN401
        self.jobs.put(message.topic.split("/")[2])

    def work(self) -> None:
        session = requests.Session()
        while True:
            sn = self.jobs.get()
            form = {"vendor": VENDOR, "model": MODEL, "sn": sn}
            cik = session.post(self.url, data=form, timeout=30).content
            with self.lock:
                fd = os.open(self.folder / sn, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, cik)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.database.execute("INSERT OR REPLACE INTO node VALUES (?, 'activated')", (sn,))
                self.database.commit()
            payload = json.dumps({"sn": sn, "status": "activated", "cik": cik.decode()}).encode()
            self.client.publish(f"{PREFIX}/nodes/{sn}/credentials", payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    pipeline = Pipeline(args.port, args.url, args.folder, args.workers)
    print("subscribed", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stop.set())
    stop.wait()
    pipeline.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
