"""Child processes, for the demo, the tests and the benchmarks: a process's output read
line by line and waited on, and a private mosquitto on a free port."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

WAIT: Final = 30.0
"""How long a wait for a line, or for a process to exit, lasts at most."""


class Output:
    """A child's output read on a thread into ``sink`` (appended to), each line kept (and
    given to ``echo``, if any) for :meth:`wait_for`."""

    def __init__(
        self,
        name: str,
        stream: IO[bytes] | None,
        sink: Path,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        if stream is None:
            raise ValueError(f"{name}: no output pipe to read")
        self.name = name
        self.lines: list[str] = []
        self._stream = stream
        self._ended = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(sink, echo), daemon=True)
        self.thread.start()

    def _read(self, sink: Path, echo: Callable[[str], None] | None) -> None:
        with sink.open("a", encoding="utf-8") as file:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                file.write(line + "\n")
                file.flush()
                if echo is not None:
                    echo(line)
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = WAIT, start: int = 0) -> str:
        """The first line from index ``start`` on that matches; TimeoutError if none comes
        within ``timeout`` seconds, or the output ends without one."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    what = "ended without" if self._ended else f"did not log in {timeout:g} s"
                    last = "\n".join(self.lines[-20:]) or "(none)"
                    raise TimeoutError(f"{self.name} {what} {pattern!r}; its last lines:\n{last}")
                self._cond.wait(left)

    def close(self) -> None:
        """Wait for the end of the output (the process has exited), then close it."""
        self.thread.join(WAIT)
        self._stream.close()


def stop(process: subprocess.Popen[bytes], output: Output) -> int:
    """SIGTERM (if still running), wait, SIGKILL if that takes too long; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait(WAIT)
    output.close()
    return code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A mosquitto process on a free port of 127.0.0.1; it can be stopped and started again."""

    def __init__(
        self, folder: Path, *, anonymous: bool = True, listeners: str | None = None
    ) -> None:
        """``anonymous=False`` makes a broker that refuses every client (no accounts);
        ``listeners`` replaces the plain listener on ``port`` with configuration text of
        the caller's own."""
        self.port = free_port()
        self.host = "127.0.0.1"
        self.conf = folder / "mosquitto.conf"
        plain = f"listener {self.port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
        self.conf.write_text(
            (plain if listeners is None else listeners + "\n") + "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n"
            "max_queued_messages 100000\n"
            # as root, mosquitto would switch to its own user, which may not read the folder
            f"user {'root' if os.geteuid() == 0 else 'mosquitto'}\n"
        )
        self.log_path = folder / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._output: Output | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError("mosquitto not found; install it: apt-get install mosquitto")
        self._process = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._output = Output("mosquitto", self._process.stderr, self.log_path)
        try:
            self._output.wait_for(r"mosquitto version \S+ running")
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is None or self._output is None:
            return
        with contextlib.suppress(ProcessLookupError):
            stop(self._process, self._output)
        self._process = self._output = None
