"""One paho client of the broker link, on paho-mqtt 1.6.1 and on 2.x.

What the two releases differ in (:func:`new_client`, :func:`reason_code`), the
network thread's body, the reconnect backoff with full jitter, dropping the socket
under paho's feet to make it reconnect, and counting the connections the broker
closes as soon as it has accepted them.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho

from gatewayd.config.schema import MqttConfig
from gatewayd.core.errors import MqttError
from gatewayd.core.timers import backoff_ceiling

log = logging.getLogger(__name__)

PAHO_2: Final = hasattr(paho, "CallbackAPIVersion")
RECONNECT_BASE: Final = 1.0
RECONNECT_CAP: Final = 60.0
RECONNECT_FLOOR: Final = 0.1
SESSION_TAKEN_OVER: Final = 0x8E
SHORT_LIVED: Final = 5.0
"""A connection lost this soon after the broker accepted it was closed as it began."""
TAKEN_OVER_AFTER: Final = 3
"""Short-lived connections in a row, both connections taking turns, that tell (where the
broker sends no reason, as mosquitto before 2.0.16) that they keep taking each other's
client id."""
LOOP_WAIT: Final = 5.0
"""The longest paho's network thread waits for its socket (paho's own: 1 s)."""


def new_client(client_id: str, protocol: int = 5, *, persistent: bool = False) -> paho.Client:
    """A paho client with version-2 callbacks: the one place 1.6.1 and 2.x differ.

    ``persistent`` asks for a session the broker keeps (3.1.1: clean session
    off; for MQTT 5 it is chosen at connect time, with clean start).
    """
    kwargs: dict[str, Any] = {"client_id": client_id}
    if protocol == 5:
        kwargs["protocol"] = paho.MQTTv5
    else:
        kwargs["protocol"] = paho.MQTTv311
        kwargs["clean_session"] = not persistent
    if PAHO_2:
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2  # type: ignore[attr-defined]
    return paho.Client(**kwargs)


def _network_loop(client: paho.Client, wait: float) -> None:
    """The body of paho's network thread (``Client._thread_main``), with ``wait``."""
    try:
        client.loop_forever(timeout=wait, retry_first_connection=True)
    finally:
        setattr(client, "_thread", None)  # noqa: B010 (as paho's own thread body ends)


def release(client: paho.Client) -> None:
    """Close paho's wake-up socket pair now rather than when the client is collected.

    Every paho release closes it in ``_reset_sockets`` (1.6.1 to the newest 2.x);
    ``reinitialise()``, which calls it, cannot be used: on paho 2.1.0 (Debian 13) it
    builds the client again without a callback API version, and raises.
    """
    reset = getattr(client, "_reset_sockets", None)
    if callable(reset):
        reset()


def reason_code(value: object) -> int:
    """A paho reason code (int, ReasonCodes or ReasonCode) as an int."""
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, int) else -1


class Connection:
    """One paho client, its name in the log, and its own reconnect backoff."""

    def __init__(
        self,
        name: str,
        client: paho.Client,
        config: MqttConfig,
        uniform: Callable[[float, float], float],
    ) -> None:
        self.name = name
        self.client = client
        self.up = False
        self.short_lived = 0
        """Connections in a row lost within SHORT_LIVED seconds of being accepted."""
        self._accepted_at: float | None = None
        self._config = config
        self._uniform = uniform
        self._failures = 0
        self.jitter_reconnect()

    def succeeded(self, now: float) -> None:
        self._failures = 0
        self._accepted_at = now

    def lost(self, now: float) -> None:
        accepted, self._accepted_at = self._accepted_at, None
        if accepted is None:
            return
        self.short_lived = self.short_lived + 1 if now - accepted < SHORT_LIVED else 0

    def jitter_reconnect(self) -> None:
        """Full jitter: paho's next wait is drawn below a cap that doubles per failure.

        paho resets its own doubling on every ``reconnect_delay_set``, so the
        delay is chosen here and given as both bounds.
        """
        ceiling = backoff_ceiling(self._failures + 1, RECONNECT_BASE, 2.0, RECONNECT_CAP)
        delay = max(RECONNECT_FLOOR, self._uniform(0.0, ceiling))
        self._failures += 1
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def start(self, **connect: Any) -> None:  # noqa: ANN401 (paho's connect arguments)
        config = self._config
        try:
            self.client.connect_async(config.host, config.port, **connect)
        except ValueError as exc:
            raise MqttError(f"cannot connect to {config.host}: {exc}") from exc
        # paho's thread waits at most 1 s for the socket, which wakes an idle gateway once a
        # second: it waits up to LOOP_WAIT (a publish from another thread, or anything from
        # the broker, still wakes it at once; a disconnect ends it)
        wait = min(LOOP_WAIT, config.keepalive / 2)
        setattr(self.client, "_thread_main", functools.partial(_network_loop, self.client, wait))  # noqa: B010 (paho's thread body, by name)
        self.client.loop_start()

    def drop(self) -> None:
        """Close the socket under paho's feet: its thread finds the connection lost and
        reconnects, as after a network failure (the broker then publishes the will).

        The plain socket's ``shutdown`` is called even on a TLS socket: it wakes the
        network thread without touching the TLS state that thread is using."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("%s connection: shutdown: %s", self.name, exc)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release(self.client)
