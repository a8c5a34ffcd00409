"""The node-facing MQTT contract: topics, announce parsing and answer payloads."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.config.schema import NodesConfig
from gatewayd.core.actions import Answer
from gatewayd.core.errors import InvalidRequest
from gatewayd.core.events import Announced
from gatewayd.core.model import Reason, ResponseTarget
from gatewayd.core.protocol import (
    MAX_ANNOUNCE_BYTES,
    MAX_TOPIC_SN_CHARS,
    Topics,
    encode_answer,
    not_an_announce,
    parse_announce,
    response_target,
)
from gatewayd.core.secret import Secret

TOPICS = Topics("gatewayd", "gw1")
PATTERN = NodesConfig().sn_pattern
ANY_SN = re.compile(r".+", re.DOTALL)
SN = "ABC123"
ANNOUNCE = f"gatewayd/nodes/{SN}/announce"
CIK = "0123456789abcdef0123456789abcdef01234567"


def parse(
    topic: str = ANNOUNCE,
    payload: bytes = b"",
    pattern: re.Pattern[str] = PATTERN,
    response_topic: str | None = None,
    correlation: bytes | None = None,
) -> Announced:
    sn = TOPICS.topic_sn(topic)
    if sn is None:
        raise not_an_announce(topic)
    return parse_announce(TOPICS, sn, payload, pattern, response_topic, correlation)


def refusal(topic: str = ANNOUNCE, payload: bytes = b"", **kwargs: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(topic, payload, **kwargs)  # type: ignore[arg-type]
    return info.value


# -------------------------------------------------------------------- topics


def test_topics_under_the_default_prefix() -> None:
    assert TOPICS.announce_filter == "gatewayd/nodes/+/announce"
    assert TOPICS.status == "gatewayd/gateway/gw1/status"
    assert TOPICS.credentials(SN) == "gatewayd/nodes/ABC123/credentials"
    assert TOPICS.announce(SN) == ANNOUNCE
    assert TOPICS.node_subtree(SN) == "gatewayd/nodes/ABC123/"


def test_topics_under_a_multi_level_prefix() -> None:
    topics = Topics("site-7/floor2/gw", "gw.b")
    assert topics.announce_filter == "site-7/floor2/gw/nodes/+/announce"
    assert topics.status == "site-7/floor2/gw/gateway/gw.b/status"
    assert topics.credentials("x") == "site-7/floor2/gw/nodes/x/credentials"
    assert topics.topic_sn("site-7/floor2/gw/nodes/x/announce") == "x"
    assert topics.topic_sn("gatewayd/nodes/x/announce") is None


def test_topic_sn_keeps_the_case() -> None:
    assert TOPICS.topic_sn("gatewayd/nodes/aBc/announce") == "aBc"


@pytest.mark.parametrize(
    "topic",
    [
        "gatewayd/nodes//announce",
        "gatewayd/nodes/announce",
        "gatewayd/nodes/a/b/announce",
        "gatewayd/nodes/+/announce",
        "gatewayd/nodes/#/announce",
        "gatewayd/nodes/a+b/announce",
        "gatewayd/nodes/a#/announce",
        "gatewayd/nodes/a\x00b/announce",
        "gatewayd/nodes/ABC123/credentials",
        "gatewayd/nodes/ABC123/announce/",
        "other/nodes/ABC123/announce",
        "/gatewayd/nodes/ABC123/announce",
        "Gatewayd/nodes/ABC123/announce",
        "gatewayd/node/ABC123/announce",
        "gatewayd/nodes/" + "A" * (MAX_TOPIC_SN_CHARS + 1) + "/announce",
    ],
)
def test_topic_sn_is_none_for_what_is_no_announce_topic(topic: str) -> None:
    assert TOPICS.topic_sn(topic) is None


def test_topic_sn_accepts_a_level_of_the_maximum_length() -> None:
    sn = "A" * MAX_TOPIC_SN_CHARS
    assert TOPICS.topic_sn(f"gatewayd/nodes/{sn}/announce") == sn


# ------------------------------------------------------------ announce: accepted


@pytest.mark.parametrize(
    ("payload", "model"),
    [
        (b"", None),
        (b" \r\n\t", None),
        (b"{}", None),
        (b'{"model": "hygro"}', "hygro"),
        (b'{"sn": "ABC123"}', None),
        (b'{"sn": "ABC123", "model": "thermo-v1"}', "thermo-v1"),
        (b'{"model": "hygro", "firmware": "1.2.3", "rssi": -61, "extra": {"a": [1]}}', "hygro"),
        (b'\n  {"model" : "hygro"}  \n', "hygro"),
    ],
)
def test_announce_accepted(payload: bytes, model: str | None) -> None:
    assert parse(payload=payload) == Announced(SN, model, None)


CIK = "0123456789abcdef0123456789abcdef01234567"


def test_announce_may_say_its_cik_is_refused_and_offer_it() -> None:
    payload = json.dumps({"cik_rejected": True, "cik": CIK}).encode()
    announced = parse(payload=payload)
    assert announced == Announced(SN, None, None, cik_rejected=True, cik=Secret(CIK))
    assert CIK not in repr(announced)
    assert parse(payload=b'{"cik_rejected": false}') == Announced(SN)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("cik_rejected", "yes", "'cik_rejected' must be true or false"),
        ("cik_rejected", 1, "'cik_rejected' must be true or false"),
        ("cik", 42, "'cik' is no CIK: not a string"),
        ("cik", "", "'cik' is no CIK: empty"),
        ("cik", CIK[:-1], "'cik' is no CIK: 39 bytes, not 40"),
        ("cik", CIK[:-1] + "<", "'cik' is no CIK: not 40 visible ASCII characters without markup"),
        ("cik", CIK[:-1] + " ", "'cik' is no CIK: not 40 visible ASCII characters without markup"),
    ],
)
def test_a_malformed_cik_field_is_refused_without_quoting_it(
    field: str, value: object, said: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(payload=json.dumps({field: value}).encode())
    assert str(caught.value) == said
    assert caught.value.sn == SN


def test_announce_of_the_maximum_size_is_accepted() -> None:
    payload = b'{"pad": "' + b"a" * (MAX_ANNOUNCE_BYTES - 11) + b'"}'
    assert len(payload) == MAX_ANNOUNCE_BYTES
    assert parse(payload=payload) == Announced(SN)


def test_announce_keeps_the_serials_case() -> None:
    assert parse("gatewayd/nodes/abc123/announce").sn == "abc123"


def test_announce_checks_the_serial_against_the_configured_pattern() -> None:
    sn = "serial with spaces"
    assert parse(f"gatewayd/nodes/{sn}/announce", pattern=ANY_SN).sn == sn
    error = refusal(f"gatewayd/nodes/{sn}/announce")
    assert error.sn == sn
    assert "sn_pattern" in str(error)


# ------------------------------------------------------------ announce: refused


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{",
        b'{"model": "hygro",}',
        b"\x80\x81",
        b"\xff\xfe{",
        b"[]",
        b'["model", "hygro"]',
        b'"hygro"',
        b"42",
        b"null",
        b"true",
        b'{"sn": "OTHER"}',
        b'{"sn": "abc123"}',
        b'{"sn": 123}',
        b'{"sn": ""}',
        b'{"model": ""}',
        b'{"model": 5}',
        b'{"model": ["hygro"]}',
        b'{"model": {"name": "hygro"}}',
        b" " * (MAX_ANNOUNCE_BYTES + 1),
        b'{"model": "hygro", "pad": "' + b"a" * MAX_ANNOUNCE_BYTES + b'"}',
        b"[" * MAX_ANNOUNCE_BYTES,
        b'{"":' * (MAX_ANNOUNCE_BYTES // 4),
        b"[" * 2000 + b"]" * 2000,
    ],
    ids=lambda payload: f"{payload[:16]!r}x{len(payload)}",
)
def test_a_malformed_payload_is_refused_with_the_serial(payload: bytes) -> None:
    error = refusal(payload=payload)
    assert error.sn == SN


@pytest.mark.parametrize(
    "topic",
    [
        "other/nodes/ABC123/announce",
        "gatewayd/nodes/ABC123/credentials",
        "gatewayd/nodes/a/b/announce",
        "gatewayd/nodes//announce",
        "gatewayd/nodes/+/announce",
        "gatewayd/nodes/AB#/announce",
        "gatewayd/nodes/A\x00/announce",
        "gatewayd/nodes/" + "A" * (MAX_TOPIC_SN_CHARS + 1) + "/announce",
    ],
)
def test_an_unaddressable_topic_is_refused_without_a_serial(topic: str) -> None:
    error = refusal(topic, b'{"model": "hygro"}', pattern=ANY_SN)
    assert error.sn is None


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b'{"a":' * 9 + b"1" + b"}" * 9, "nested deeper than 8"),
        (b"[" * 9 + b"]" * 9, "nested deeper than 8"),
        (b'{"x": "' + b"[" * 50 + b'", "model": "hygro"}', None),  # brackets in a string
        (b'{"x": "\\\\", "y": [[[[[[[1]]]]]]]}', None),  # "\\" ends its string
        (b"{" + b",".join(b'"k%d": 0' % i for i in range(65)) + b"}", "over 64 keys"),
        (b'{"a": [' + b",".join(b'{"k": %d}' % i for i in range(65)) + b"]}", "over 64 keys"),
    ],
)
def test_depth_and_key_limits(payload: bytes, said: str | None) -> None:
    if said is None:
        assert parse(payload=payload).sn == SN
    else:
        error = refusal(payload=payload)
        assert said in str(error)
        assert error.sn == SN


def test_an_overlong_topic_is_clipped_in_the_message() -> None:
    topic = "gatewayd/nodes/" + "A" * 5000 + "/announce"
    assert len(str(refusal(topic))) < 200


def test_the_serial_pattern_is_checked_before_the_payload_is_parsed() -> None:
    topic = "gatewayd/nodes/bad!/announce"
    for payload in (b"not json", b"[" * 5000, b"x" * (MAX_ANNOUNCE_BYTES + 1)):
        error = refusal(topic, payload)
        assert error.sn == "bad!"
        assert "sn_pattern" in str(error)


# ------------------------------------------------------------ response topics


@pytest.mark.parametrize(
    "response_topic",
    [
        "gatewayd/nodes/ABC123/reply",
        "gatewayd/nodes/ABC123/r/1",
        "gatewayd/nodes/ABC123/credentials",
    ],
)
def test_a_response_topic_under_the_nodes_subtree_is_honoured(response_topic: str) -> None:
    announced = parse(response_topic=response_topic, correlation=b"\x00\x01")
    assert announced.response == ResponseTarget(response_topic, b"\x00\x01")


def test_a_response_topic_without_correlation_data() -> None:
    reply = "gatewayd/nodes/ABC123/reply"
    assert parse(response_topic=reply).response == ResponseTarget(reply, None)


@pytest.mark.parametrize(
    "response_topic",
    [
        None,
        "",
        "gatewayd/nodes/OTHER/reply",
        "gatewayd/nodes/abc123/reply",
        "gatewayd/nodes/ABC1234/reply",
        "gatewayd/nodes/ABC12/reply",
        "gatewayd/nodes/ABC123/",
        "gatewayd/nodes/ABC123",
        "gatewayd/nodes/ABC123/announce",
        "gatewayd/nodes/ABC123/+",
        "gatewayd/nodes/ABC123/#",
        "gatewayd/nodes/ABC123/a\x00",
        "other/nodes/ABC123/reply",
        "reply/gatewayd/nodes/ABC123/x",
    ],
)
def test_a_response_topic_elsewhere_is_ignored(response_topic: str | None) -> None:
    announced = parse(response_topic=response_topic, correlation=b"c")
    assert announced == Announced(SN, None, None)
    assert response_target(TOPICS, SN, response_topic, b"c") is None


# ------------------------------------------------------------------- answers


def test_encode_activated() -> None:
    answer = Answer(SN, "activated", vendor="acme", model="thermo-v1", cik=Secret(CIK))
    body = json.loads(encode_answer(answer))
    assert list(body) == ["sn", "status", "cik", "vendor", "model"]
    assert body == {
        "sn": SN,
        "status": "activated",
        "cik": CIK,
        "vendor": "acme",
        "model": "thermo-v1",
    }


def test_encode_pending() -> None:
    answer = Answer(SN, "pending", retry_in=30, message="Exosite unreachable; retrying")
    body = json.loads(encode_answer(answer))
    assert list(body) == ["sn", "status", "retry_in", "message"]
    assert body == {
        "sn": SN,
        "status": "pending",
        "retry_in": 30,
        "message": "Exosite unreachable; retrying",
    }


def test_encode_pending_keeps_a_zero_retry() -> None:
    body = json.loads(encode_answer(Answer(SN, "pending", retry_in=0, message="now")))
    assert body["retry_in"] == 0


def test_encode_rejected() -> None:
    answer = Answer(
        SN,
        "rejected",
        reason=Reason.UNKNOWN_SERIAL,
        http_status=404,
        message="the serial number is not known to Exosite",
    )
    body = json.loads(encode_answer(answer))
    assert list(body) == ["sn", "status", "reason", "http_status", "message"]
    assert body == {
        "sn": SN,
        "status": "rejected",
        "reason": "unknown_serial",
        "http_status": 404,
        "message": "the serial number is not known to Exosite",
    }


@pytest.mark.parametrize("reason", list(Reason))
def test_encode_rejected_names_each_reason_by_its_value(reason: Reason) -> None:
    body = json.loads(encode_answer(Answer(SN, "rejected", reason=reason, message="m")))
    assert body == {"sn": SN, "status": "rejected", "reason": reason.value, "message": "m"}


def test_encode_is_compact_ascii_json() -> None:
    payload = encode_answer(Answer("Sn\u00e9", "pending", retry_in=5, message="d\u00e9j\u00e0"))
    assert payload.isascii()
    assert b": " not in payload
    assert b", " not in payload
    assert json.loads(payload)["message"] == "d\u00e9j\u00e0"


def test_an_answer_without_a_cik_carries_none() -> None:
    body = json.loads(encode_answer(Answer(SN, "pending", retry_in=1)))
    assert "cik" not in body


# ------------------------------------------------------------------ property

level = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
topics = st.one_of(
    st.text(max_size=40),
    st.builds("gatewayd/nodes/{}/announce".format, level),
    st.builds("{}/nodes/{}/{}".format, level, level, level),
)
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda doc: json.dumps(doc).encode(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["sn", "model", "x"]) | st.text(max_size=4), inner
                )
            ),
            max_leaves=8,
        ),
    ),
    st.builds(lambda n: b"[" * n, st.integers(min_value=0, max_value=MAX_ANNOUNCE_BYTES + 1)),
)


@settings(max_examples=150, deadline=None)
@given(
    topic=topics,
    payload=payloads,
    response_topic=st.none()
    | st.text(max_size=30)
    | st.builds("gatewayd/nodes/{}/{}".format, level, level),
    pattern=st.sampled_from([PATTERN, ANY_SN]),
)
def test_parse_announce_returns_an_announce_or_raises_invalid_request(
    topic: str, payload: bytes, response_topic: str | None, pattern: re.Pattern[str]
) -> None:
    outcome: Announced | InvalidRequest
    try:
        outcome = parse(topic, payload, pattern, response_topic, b"c")
    except InvalidRequest as exc:
        outcome = exc
    if isinstance(outcome, InvalidRequest):
        assert outcome.sn is None or TOPICS.topic_sn(topic) == outcome.sn
        return
    assert isinstance(outcome, Announced)
    assert TOPICS.topic_sn(topic) == outcome.sn
    assert pattern.fullmatch(outcome.sn)
    assert outcome.model is None or isinstance(outcome.model, str)
    if outcome.response is not None:
        assert outcome.response.topic.startswith(TOPICS.node_subtree(outcome.sn))
