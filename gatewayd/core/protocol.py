"""The node-facing MQTT contract: topics, announce parsing, answer payloads.

Pure functions over strings and bytes; the MQTT adapter and the engine both
build on them. An announce that cannot be acted on raises
:class:`~gatewayd.core.errors.InvalidRequest`, and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from gatewayd.core.actions import Answer
from gatewayd.core.errors import InvalidRequest
from gatewayd.core.events import Announced
from gatewayd.core.model import ResponseTarget
from gatewayd.core.secret import Secret, cik_shape

MAX_ANNOUNCE_BYTES: Final = 4096
"""An announce larger than this is refused before it is parsed."""

MAX_JSON_DEPTH: Final = 8
"""Arrays and objects nested deeper than this are refused before the payload is parsed."""

MAX_JSON_KEYS: Final = 64
"""An announce with more keys than this, counted over every object in it, is refused."""

MAX_TOPIC_SN_CHARS: Final = 256
"""A topic level longer than this is not answered, even with invalid_request."""

_WILDCARDS: Final = re.compile(r"[+#\x00]")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics under ``[mqtt] topic_prefix``."""

    prefix: str
    gateway_id: str

    @property
    def announce_filter(self) -> str:
        return f"{self.prefix}/nodes/+/announce"

    @property
    def status(self) -> str:
        return f"{self.prefix}/gateway/{self.gateway_id}/status"

    def credentials(self, sn: str) -> str:
        return f"{self.prefix}/nodes/{sn}/credentials"

    def node_subtree(self, sn: str) -> str:
        return f"{self.prefix}/nodes/{sn}/"

    def announce(self, sn: str) -> str:
        return f"{self.prefix}/nodes/{sn}/announce"

    def topic_sn(self, topic: str) -> str | None:
        """The serial level of an announce topic, or None if the topic is not one."""
        head = f"{self.prefix}/nodes/"
        tail = "/announce"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        sn = topic[len(head) : -len(tail)]
        return sn if serial_level(sn) else None


def serial_level(sn: str) -> bool:
    """Whether ``sn`` can be the serial level of a node's topics."""
    return (
        bool(sn) and "/" not in sn and len(sn) <= MAX_TOPIC_SN_CHARS and not _WILDCARDS.search(sn)
    )


def parse_announce(
    topics: Topics,
    sn: str,
    payload: bytes,
    sn_pattern: re.Pattern[str],
    response_topic: str | None = None,
    correlation: bytes | None = None,
) -> Announced:
    """Check the announce of ``sn`` (the serial level of its topic, :meth:`Topics.topic_sn`)
    and return it as an event, or raise InvalidRequest.

    The serial is checked against ``sn_pattern`` before anything else. The
    exception carries the serial, and the response target when it lies under
    the node's own subtree, so that the node can be answered.
    """
    response = response_target(topics, sn, response_topic, correlation)
    if not sn_pattern.fullmatch(sn):
        raise InvalidRequest(f"serial {_clip(sn)!r} does not match sn_pattern", sn, response)
    try:
        model, cik_rejected, cik = _parse_payload(sn, payload)
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc), sn, response) from None
    return Announced(sn, model, response, cik_rejected, cik)


def not_an_announce(topic: str) -> InvalidRequest:
    """The refusal of a message on a topic that is no announce topic."""
    return InvalidRequest(f"not an announce topic: {_clip(topic)}")


def response_target(
    topics: Topics, sn: str, response_topic: str | None, correlation: bytes | None
) -> ResponseTarget | None:
    """The MQTT 5 response target of an announce, if it lies under the node's subtree.

    The node's announce topic itself is refused: gatewayd subscribes to it, and
    would take its own answer for a new announce.
    """
    if not response_topic:
        return None
    subtree = topics.node_subtree(sn)
    if not response_topic.startswith(subtree) or len(response_topic) == len(subtree):
        return None
    if response_topic == topics.announce(sn):
        return None
    if _WILDCARDS.search(response_topic):
        return None
    return ResponseTarget(response_topic, correlation)


def _parse_payload(sn: str, payload: bytes) -> tuple[str | None, bool, Secret | None]:
    """The model the payload names, whether it says its CIK is refused, the CIK it offers."""
    if len(payload) > MAX_ANNOUNCE_BYTES:
        raise InvalidRequest(f"announce payload over {MAX_ANNOUNCE_BYTES} bytes", sn)
    if not payload.strip():
        return None, False, None
    document = _document(sn, payload)
    body_sn = document.get("sn")
    if body_sn is not None and body_sn != sn:
        raise InvalidRequest("'sn' in the payload differs from the topic's serial", sn)
    model = document.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequest("'model' must be a non-empty string", sn)
    cik_rejected = document.get("cik_rejected", False)
    if not isinstance(cik_rejected, bool):
        raise InvalidRequest("'cik_rejected' must be true or false", sn)
    cik = document.get("cik")
    if cik is None:
        return model, cik_rejected, None
    if not isinstance(cik, str):
        raise InvalidRequest("'cik' is no CIK: not a string", sn)
    problem = cik_shape(cik)
    if problem is not None:
        raise InvalidRequest(f"'cik' is no CIK: {problem}", sn)  # never quoted
    return model, cik_rejected, Secret(cik)


def _document(sn: str, payload: bytes) -> dict[str, object]:
    """The payload's JSON object, within the bounds on depth and keys."""
    if _depth(payload) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"announce payload is nested deeper than {MAX_JSON_DEPTH}", sn)
    keys = 0

    def count(pairs: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal keys
        keys += len(pairs)
        if keys > MAX_JSON_KEYS:
            raise InvalidRequest(f"announce payload has over {MAX_JSON_KEYS} keys", sn)
        return dict(pairs)

    try:
        document = json.loads(payload, object_pairs_hook=count)
    except ValueError as exc:
        raise InvalidRequest("announce payload is not valid JSON", sn) from exc
    if not isinstance(document, dict):
        raise InvalidRequest("announce payload is not a JSON object", sn)
    return document


def _depth(payload: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, by one pass over its bytes."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in {0x5B, 0x7B}:  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in {0x5D, 0x7D}:  # ] }
            depth -= 1
    return deepest


def encode_answer(answer: Answer) -> bytes:
    """The JSON payload of an answer, as published on the credentials topic."""
    body: dict[str, object] = {"sn": answer.sn, "status": answer.status}
    if answer.cik is not None:
        body["cik"] = answer.cik.reveal()
    optional: dict[str, object | None] = {
        "vendor": answer.vendor,
        "model": answer.model,
        "retry_in": answer.retry_in,
        "reason": None if answer.reason is None else str(answer.reason),
        "http_status": answer.http_status,
        "message": answer.message,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if answer.checked:
        body["checked"] = True
    if answer.adopted:
        body["adopted"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
