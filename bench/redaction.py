"""The cost of one log line as the redaction set grows: an announce offering a CIK is
parsed and a node event about it goes through the log filter, after 0, 40,000 and
86,400 announces (a day of one node at its allowed rate) offered CIKs of their own,
and with the set full (every CIK gatewayd stored or checked lately, up to its bound).
Nothing a node merely offers may make the next log line dearer.
"""

from __future__ import annotations

import logging
import re
import secrets
import statistics
import time
from typing import Any

from gatewayd.adapters import logs, redaction
from gatewayd.core import protocol
from gatewayd.core.secret import Secret

LINES = 2_000
REPEATS = 5
OFFERS = (0, 40_000, 86_400)
TOPICS = protocol.Topics("gatewayd", "gw1")
PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _Sink(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def _logger() -> logging.Logger:
    log = logging.getLogger("bench.redaction")
    log.propagate = False
    log.handlers.clear()
    handler = _Sink()
    handler.addFilter(logs.RedactSecrets())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def _cik(alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(40))


HEX = "0123456789abcdef"
VISIBLE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _offer(cik: str) -> bytes:
    return f'{{"cik": "{cik}", "model": "thermo-v1"}}'.encode()


def _per_line_us(log: logging.Logger, alphabet: str, lines: int) -> float:
    """Microseconds to parse an announce offering a CIK and log a line about it."""
    payloads = [_offer(_cik(alphabet)) for _ in range(lines)]
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for payload in payloads:
            announced = protocol.parse_announce(TOPICS, "SN-BENCH", payload, PATTERN)
            log.info("node %s: announce received (%d bytes)", announced.sn, len(payload))
        runs.append((time.perf_counter() - start) / lines * 1e6)
    return statistics.median(runs)


def _long_line_us(lines: int) -> float:
    """Microseconds to take the secrets out of a 2,000-character text (a traceback's), the
    set full."""
    text = "Traceback (most recent call last):\n" + "  File x.py, line 1, in f\n" * 76
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(lines):
            redaction.redact(text)
        runs.append((time.perf_counter() - start) / lines * 1e6)
    return statistics.median(runs)


def run(offers_seen: tuple[int, ...] = OFFERS, lines: int = LINES) -> dict[str, Any]:
    """Per line, offering CIKs of Exosite's hex and of other visible characters."""
    log = _logger()
    figures: dict[str, Any] = {"lines": lines}
    seen = 0
    for offers in offers_seen:
        for i in range(offers - seen):
            cik = _cik(HEX if i % 2 else VISIBLE)
            protocol.parse_announce(TOPICS, "SN-BENCH", _offer(cik), PATTERN)
        seen = offers
        figures[f"us_after_{offers}"] = _per_line_us(log, VISIBLE, lines)
    figures["remembered_after_offers"] = len(redaction.REDACTIONS)
    for i in range(2 * redaction.MAX_CIKS + 1_000):
        redaction.remember_cik(Secret(_cik(HEX if i % 2 else VISIBLE)))
    figures["remembered_full"] = len(redaction.REDACTIONS)
    figures["us_full"] = _per_line_us(log, VISIBLE, lines)
    figures["us_long_line"] = _long_line_us(lines)
    fewest = figures[f"us_after_{offers_seen[0]}"]
    figures["ratio"] = max(figures[f"us_after_{offers_seen[-1]}"], figures["us_full"]) / fewest
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
