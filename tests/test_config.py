"""The configuration file: defaults, every key's checks, messages, and the example file."""

from __future__ import annotations

import dataclasses
import re
import socket
import tomllib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gatewayd.config import schema
from gatewayd.config.load import DEFAULT_PATH, load, parse
from gatewayd.config.schema import (
    Config,
    ExositeConfig,
    GatewayConfig,
    KeyringConfig,
    MqttConfig,
    NodesConfig,
    TlsConfig,
)
from gatewayd.core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
SOURCE = "/etc/gatewayd/config.toml"
REQUIRED = {"vendor": '"acme"', "model": '"thermo-v1"'}


def toml_text(section: str = "", key: str = "", value: str = "", **extra: str) -> str:
    """A file with the required keys, plus ``key = value`` (TOML text) in ``section``.

    ``extra`` adds more keys, named ``section__key``.
    """
    tables: dict[str, dict[str, str]] = {"exosite": dict(REQUIRED)}
    if section:
        tables.setdefault(section, {})[key] = value
    for dotted, text in extra.items():
        extra_section, extra_key = dotted.split("__")
        tables.setdefault(extra_section, {})[extra_key] = text
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
        for name, keys in tables.items()
    )


def parse_one(section: str, key: str, value: str, **extra: str) -> Config:
    return parse(toml_text(section, key, value, **extra), SOURCE)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, SOURCE)
    return info.value


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c for c in value
    )
    return f'"{escaped}"'


# -- defaults ---------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = parse(toml_text(), SOURCE)
    assert cfg.source == SOURCE
    assert cfg.gateway == GatewayConfig(
        id=socket.gethostname(), state_dir=Path("/var/lib/gatewayd"), log_level="info"
    )
    assert cfg.mqtt == MqttConfig(
        host="localhost",
        port=1883,
        client_id=f"gatewayd-{socket.gethostname()}",
        topic_prefix="gatewayd",
        protocol=5,
        keepalive=60,
        session_expiry=86400,
        username=None,
        password_file=None,
    )
    assert cfg.exosite == ExositeConfig(
        vendor="acme",
        model="thermo-v1",
        api="onep",
        url="https://m2.exosite.com",
        models=("thermo-v1",),
        timeout=10.0,
        max_concurrent=4,
        max_rate=5.0,
        ca_file=None,
    )
    assert cfg.keyring == KeyringConfig(
        backend="gatewayd.adapters.keystore.FileKeyring", service="gatewayd", key_file=None
    )
    assert cfg.nodes.sn_pattern.pattern == r"^[A-Za-z0-9._:-]{1,64}$"
    assert cfg.nodes.rejected_retry_after == 300.0
    assert Path("/etc/gatewayd/config.toml") == DEFAULT_PATH


def test_defaults_of_the_dataclasses_match_the_file_defaults() -> None:
    cfg = parse(toml_text(), SOURCE)
    assert cfg.gateway == GatewayConfig()
    assert cfg.mqtt == MqttConfig(client_id=f"gatewayd-{socket.gethostname()}")
    assert cfg.keyring == KeyringConfig()
    assert cfg.nodes == NodesConfig()


def test_sections_are_frozen() -> None:
    cfg = parse(toml_text(), SOURCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.exosite = cfg.exosite  # type: ignore[misc]


def test_the_error_message_names_file_key_expectation_and_value() -> None:
    exc = error_of(toml_text("mqtt", "port", '"abc"'))
    assert str(exc) == (
        "/etc/gatewayd/config.toml: mqtt.port: expected an integer from 1 to 65535, got 'abc'"
    )
    assert (exc.source, exc.key) == (SOURCE, "mqtt.port")


def test_parse_without_a_source_says_string() -> None:
    with pytest.raises(ConfigError, match=r"^<string>: mqtt\.port: "):
        parse(toml_text("mqtt", "port", "0"))


# -- every key's type and range ---------------------------------------------------------

BAD = [
    ("gateway", "id", ['"two words"', '""', '"a/b"', '"a+b"', f'"{"x" * 65}"', "5"]),
    ("gateway", "state_dir", ['"var/lib/gatewayd"', '""', "5", '["/var"]']),
    ("gateway", "log_level", ['"INFO"', '"verbose"', "1"]),
    ("gateway", "control_socket", ['"run/control.sock"', f'"/run/{"s" * 103}"', "5"]),
    ("mqtt", "host", ['""', '"mqtt://broker"', '"broker:1883"', '"two words"', "1"]),
    ("mqtt", "port", ["0", "65536", '"abc"', "true", "1883.0", "-1"]),
    ("mqtt", "client_id", ['"two words"', f'"{"c" * 129}"', "1", '"tab\\there"']),
    (
        "mqtt",
        "topic_prefix",
        ['""', '"a/+/b"', '"a/#"', '"/a"', '"a/"', '"a//b"', '"$SYS"', '"a\\u0000b"', "1"],
    ),
    ("mqtt", "protocol", ["3", "5.0", '"5"', "true"]),
    ("mqtt", "keepalive", ["4", "3601", "60.5", "false"]),
    ("mqtt", "session_expiry", ["-1", "4294967296", "false", "1.5"]),
    ("mqtt", "username", ['""', "1", "true"]),
    ("mqtt", "answers_username", ['""', "1", "true"]),
    ("mqtt", "password_file", ['"mqtt-password"', "1"]),
    ("mqtt", "allow_insecure", ['"yes"', "1"]),
    ("mqtt", "tls", ['"yes"', "5", "[1]"]),
    ("exosite", "vendor", ['""', '"a/b"', "1"]),
    ("exosite", "model", ['""', '"a/b"', "[]"]),
    ("exosite", "api", ['"ONEP"', '"http"', "1"]),
    (
        "exosite",
        "url",
        [
            '"ftp://m2.exosite.com"',
            '"m2.exosite.com"',
            '"https://"',
            '"https://m2.exosite.com/provision"',
            '"https://m2.exosite.com/?x=1"',
            '"https://m2.exosite.com/?"',
            '"https://m2.exosite.com#f"',
            '"https://m2.exosite.com:99999"',
            '"https://m2.exosite.com:0"',
            '"https://m2.exosite.com:port"',
            '"https://two words"',
            "1",
        ],
    ),
    ("exosite", "models", ['"thermo-v1"', '[""]', '["a/b"]', "[1]", '["ok", 2]']),
    ("exosite", "timeout", ["0", "-1", "300.5", "inf", "nan", "true", '"10"']),
    ("exosite", "max_concurrent", ["0", "65", "2.0", "true"]),
    ("exosite", "max_rate", ["0", "-1", "inf", "false", '"5"']),
    ("exosite", "retry_base", ["0", "-1", "inf", '"5"']),
    ("exosite", "retry_cap", ["1", "-1", "nan", "true"]),
    ("exosite", "ca_file", ['"ca.pem"', "1"]),
    ("exosite", "vendor_token_file", ['"token"', "1"]),
    ("exosite", "auto_reenable", ['"yes"', "1", "0"]),
    (
        "keyring",
        "backend",
        [
            '"FileKeyring"',
            '"gatewayd.adapters.keystore."',
            '"gatewayd..Keyring"',
            '"1mod.Class"',
            "1",
        ],
    ),
    ("keyring", "service", ['""', '"a/b"', "1"]),
    ("keyring", "key_file", ['"keyring-key"', "1"]),
    ("nodes", "sn_pattern", ['"(("', '"[a-"', "1"]),
    ("nodes", "rejected_retry_after", ["-1", "-inf", "nan", "true", '"300"']),
    ("nodes", "check_interval", ["0", "-1", "inf", "nan", "true", '"300"']),
    ("nodes", "announce_rate", ["0", "-1", '"fast"']),
    ("nodes", "announce_burst", ["0", "1001", "1.5"]),
    ("nodes", "max_pending", ["0", '"many"', "1000001"]),
]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [(section, key, value) for section, key, values in BAD for value in values],
)
def test_a_bad_value_names_file_and_key_and_shows_the_value(
    section: str, key: str, value: str
) -> None:
    exc = error_of(toml_text(section, key, value))
    shown = repr(tomllib.loads(f"v = {value}")["v"])
    assert (exc.source, exc.key) == (SOURCE, f"{section}.{key}")
    assert str(exc).startswith(f"{SOURCE}: {section}.{key}: expected ")
    assert f", got {shown[:40]}" in str(exc)


def test_every_key_has_bad_values_checked() -> None:
    checked = {f"{section}.{key}" for section, key, _ in BAD}
    every = {
        f"{name}.{f.name}" for name, cls in schema.SECTIONS.items() for f in dataclasses.fields(cls)
    }
    assert checked == every


GOOD = [
    ("gateway", "id", '"gw-01.site_a"', "gw-01.site_a"),
    ("gateway", "id", f'"{"x" * 64}"', "x" * 64),
    ("gateway", "state_dir", '"/srv/gatewayd"', Path("/srv/gatewayd")),
    ("gateway", "log_level", '"debug"', "debug"),
    ("gateway", "log_level", '"error"', "error"),
    ("mqtt", "host", '"192.0.2.1"', "192.0.2.1"),
    ("mqtt", "host", '"::1"', "::1"),
    ("mqtt", "host", '"broker.example.net"', "broker.example.net"),
    ("mqtt", "port", "1", 1),
    ("mqtt", "port", "65535", 65535),
    ("mqtt", "client_id", '"my-gateway"', "my-gateway"),
    ("mqtt", "topic_prefix", '"site-1/gw"', "site-1/gw"),
    ("mqtt", "protocol", "4", 4),
    ("mqtt", "keepalive", "5", 5),
    ("mqtt", "keepalive", "3600", 3600),
    ("mqtt", "session_expiry", "0", 0),
    ("mqtt", "session_expiry", "4294967295", 4294967295),
    ("mqtt", "username", '"gatewayd"', "gatewayd"),
    ("exosite", "vendor", '"vendor.co"', "vendor.co"),
    ("exosite", "api", '"onep"', "onep"),
    ("exosite", "url", '"http://127.0.0.1:8080/"', "http://127.0.0.1:8080"),
    ("exosite", "url", '"https://m2.exosite.com"', "https://m2.exosite.com"),
    ("exosite", "timeout", "300", 300.0),
    ("exosite", "timeout", "0.001", 0.001),
    ("exosite", "max_concurrent", "1", 1),
    ("exosite", "max_concurrent", "64", 64),
    ("exosite", "max_rate", "0.1", 0.1),
    ("exosite", "max_rate", "100", 100.0),
    ("exosite", "retry_base", "0.2", 0.2),
    ("exosite", "retry_cap", "5", 5.0),
    ("exosite", "ca_file", '"/etc/ssl/exosite.pem"', Path("/etc/ssl/exosite.pem")),
    (
        "exosite",
        "vendor_token_file",
        '"/etc/gatewayd/vendor-token"',
        Path("/etc/gatewayd/vendor-token"),
    ),
    ("exosite", "auto_reenable", "true", True),
    (
        "keyring",
        "backend",
        '"keyrings.alt.file.PlaintextKeyring"',
        "keyrings.alt.file.PlaintextKeyring",
    ),
    ("keyring", "service", '"gatewayd-test"', "gatewayd-test"),
    ("keyring", "key_file", '"/run/credentials/k"', Path("/run/credentials/k")),
    ("nodes", "sn_pattern", '"^[0-9A-F]{12}$"', re.compile(r"^[0-9A-F]{12}$")),
    ("nodes", "rejected_retry_after", "0", 0.0),
    ("nodes", "check_interval", "0.5", 0.5),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), GOOD)
def test_a_good_value_is_kept_with_the_field_type(
    section: str, key: str, value: str, expected: object
) -> None:
    got = getattr(getattr(parse_one(section, key, value), section), key)
    assert got == expected
    assert type(got) is type(expected)


@given(st.integers(min_value=-(2**40), max_value=2**40))
@example(0)
@example(1)
@example(65535)
@example(65536)
def test_port_is_accepted_exactly_in_range(port: int) -> None:
    text = toml_text("mqtt", "port", str(port))
    if 1 <= port <= 65535:
        assert parse(text).mqtt.port == port
    else:
        with pytest.raises(ConfigError, match=r"mqtt\.port: expected an integer from 1 to 65535"):
            parse(text)


def test_paths_must_be_absolute_even_when_constructed_directly() -> None:
    with pytest.raises(ConfigError, match=r"^GatewayConfig: gateway\.state_dir: expected an abs"):
        GatewayConfig(id="gw", state_dir=Path("relative"))


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        MqttConfig(port=0)
    assert str(info.value) == "MqttConfig: mqtt.port: expected an integer from 1 to 65535, got 0"


def test_a_long_value_is_shown_cut_short() -> None:
    exc = error_of(toml_text("mqtt", "host", f'"{"h " * 200}"'))
    assert str(exc).endswith("...")
    assert len(str(exc)) < 250


def test_a_url_with_a_password_is_not_shown() -> None:
    exc = error_of(toml_text("exosite", "url", '"https://user:hunter2@m2.exosite.com"'))
    assert exc.key == "exosite.url"
    assert "hunter2" not in str(exc)
    assert "user name" in str(exc)


def test_an_invalid_regular_expression_says_why() -> None:
    exc = error_of(toml_text("nodes", "sn_pattern", '"[a-"'))
    assert "position" in str(exc)
    assert "'[a-'" in str(exc)


def test_password_file_needs_username() -> None:
    exc = error_of(toml_text("mqtt", "password_file", '"/etc/gatewayd/mqtt-password"'))
    assert exc.key == "mqtt.password_file"
    assert "mqtt.username" in str(exc)
    cfg = parse_one("mqtt", "password_file", '"/etc/gatewayd/mqtt-password"', mqtt__username='"gw"')
    assert cfg.mqtt.password_file == Path("/etc/gatewayd/mqtt-password")
    assert cfg.mqtt.username == "gw"


def test_the_answers_connection_may_have_an_account_of_its_own() -> None:
    exc = error_of(toml_text("mqtt", "answers_username", '"gatewayd-answers"'))
    assert exc.key == "mqtt.answers_username"
    assert "mqtt.username" in str(exc)
    cfg = parse_one("mqtt", "answers_username", '"gw-out"', mqtt__username='"gw"')
    assert (cfg.mqtt.username, cfg.mqtt.answers_username) == ("gw", "gw-out")


def test_tls_is_a_table_of_its_own() -> None:
    text = toml_text() + '[mqtt.tls]\nca_file = "/etc/gatewayd/ca.pem"\n'
    tls = parse(text, SOURCE).mqtt.tls
    assert tls == TlsConfig(ca_file=Path("/etc/gatewayd/ca.pem"))
    assert parse(toml_text() + "[mqtt.tls]\n", SOURCE).mqtt.tls == TlsConfig()
    assert parse(toml_text(), SOURCE).mqtt.tls is None


@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        ('cafile = "/ca.pem"', "mqtt.tls.cafile", "unknown key; [mqtt.tls] knows: ca_file"),
        ('ca_file = "ca.pem"', "mqtt.tls.ca_file", "an absolute path"),
        ('key_file = "/k.pem"', "mqtt.tls.key_file", "needs mqtt.tls.cert_file"),
        ('answers_cert_file = "c.pem"', "mqtt.tls.answers_cert_file", "an absolute path"),
    ],
)
def test_a_bad_tls_table_names_its_key(table: str, key: str, said: str) -> None:
    exc = error_of(toml_text() + f"[mqtt.tls]\n{table}\n")
    assert exc.key == key
    assert said in str(exc)
    assert str(exc).startswith(SOURCE)


def test_an_inline_password_is_refused_with_the_way_to_give_one() -> None:
    exc = error_of(toml_text("mqtt", "password", '"hunter2"'))
    assert exc.key == "mqtt.password"
    assert "mqtt.password_file" in str(exc)
    assert "gatewayd-mqtt-password" in str(exc)
    assert "hunter2" not in str(exc)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("broker.local", False),
        ("192.168.1.5", False),
        ("localhost.example.com", False),
    ],
)
def test_which_brokers_are_on_this_machine(host: str, loopback: bool) -> None:
    assert MqttConfig(host=host).loopback is loopback


@given(
    st.lists(
        st.text(st.characters(exclude_characters="/+#\0", exclude_categories=["Cs"]), min_size=1),
        min_size=1,
        max_size=5,
    )
    .map("/".join)
    .filter(lambda prefix: not prefix.startswith("$"))
)
def test_valid_topic_prefixes_round_trip(prefix: str) -> None:
    assert parse(toml_text("mqtt", "topic_prefix", toml_string(prefix))).mqtt.topic_prefix == prefix


@given(st.text(), st.sampled_from("+#"), st.text())
def test_topic_prefixes_with_wildcards_are_rejected(head: str, wildcard: str, tail: str) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.topic_prefix: expected"):
        parse(toml_text("mqtt", "topic_prefix", toml_string(head + wildcard + tail)))


# -- unknown keys and sections ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[mqtt]\nprot = 1\n", "mqtt.prot", "unknown key; did you mean mqtt.port?"),
        ("[mqtt]\nkeep_alive = 1\n", "mqtt.keep_alive", "did you mean mqtt.keepalive?"),
        ("[keyring]\nkeyfile = '/k'\n", "keyring.keyfile", "did you mean keyring.key_file?"),
        ("[nodes]\nsn_patern = 'x'\n", "nodes.sn_patern", "did you mean nodes.sn_pattern?"),
        ("[nodes]\nsn_regex = 'x'\n", "nodes.sn_regex", "[nodes] knows: sn_pattern, rejected"),
        ("[gateway]\nport = 1\n", "gateway.port", "did you mean mqtt.port, under [mqtt]?"),
        ("[mqt]\nport = 1\n", "mqt", "unknown section; did you mean [mqtt]?"),
        ("[keyrings]\n", "keyrings", "unknown section; did you mean [keyring]?"),
        ("[node]\n", "node", "unknown section; did you mean [nodes]?"),
        ("[frobnicate]\n", "frobnicate", "known sections: [gateway], [mqtt], [exosite]"),
        ("[mqtt.tls]\nca = '/x'\n", "mqtt.tls.ca", "unknown key; [mqtt.tls] knows: ca_file,"),
        ("[mqtt]\nzzz = 1\n", "mqtt.zzz", "[mqtt] knows: host, port, client_id"),
    ],
)
def test_unknown_names_get_a_suggestion(text: str, key: str, message: str) -> None:
    exc = error_of(toml_text() + text)
    assert exc.key == key
    assert str(exc).startswith(f"{SOURCE}: {key}: ")
    assert message in str(exc)


def test_an_unknown_key_never_shows_its_value() -> None:
    exc = error_of(toml_text() + "[mqtt]\npasswd = 'hunter2'\n")
    assert str(exc) == f"{SOURCE}: mqtt.passwd: unknown key; did you mean mqtt.password_file?"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('log_level = "debug"\n', "log_level", "did you mean gateway.log_level, under [gateway]?"),
        ("zzz = 1\n", "zzz", "unknown key outside any section"),
    ],
)
def test_keys_outside_any_section_are_refused(text: str, key: str, message: str) -> None:
    exc = error_of(text + toml_text())
    assert exc.key == key
    assert message in str(exc)


def test_a_section_that_is_not_a_table() -> None:
    exc = error_of("mqtt = 1\n" + toml_text())
    assert str(exc) == f"{SOURCE}: mqtt: expected a table, [mqtt], got 1"


def test_the_exosite_section_is_required() -> None:
    exc = error_of("[mqtt]\nport = 1883\n")
    assert str(exc) == f"{SOURCE}: exosite: missing; [exosite] is a required section"


@pytest.mark.parametrize("key", ["vendor", "model"])
def test_vendor_and_model_are_required(key: str) -> None:
    other = "model" if key == "vendor" else "vendor"
    exc = error_of(f"[exosite]\n{other} = {REQUIRED[other]}\n")
    assert str(exc) == f"{SOURCE}: exosite.{key}: missing; this key is required"


# -- values resolved at load time -------------------------------------------------------


def test_client_id_defaults_to_the_gateway_id() -> None:
    assert parse_one("gateway", "id", '"gw-7"').mqtt.client_id == "gatewayd-gw-7"
    explicit_empty = parse_one("gateway", "id", '"gw-7"', mqtt__client_id='""')
    assert explicit_empty.mqtt.client_id == "gatewayd-gw-7"
    assert parse_one("mqtt", "client_id", '"mine"').mqtt.client_id == "mine"


def test_client_id_is_resolved_when_built_directly() -> None:
    cfg = Config(
        source="<test>",
        gateway=GatewayConfig(id="gw-9"),
        mqtt=MqttConfig(),
        exosite=ExositeConfig(vendor="acme", model="thermo-v1"),
        keyring=KeyringConfig(),
        nodes=NodesConfig(),
    )
    assert cfg.mqtt.client_id == "gatewayd-gw-9"


@given(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True))
def test_every_valid_gateway_id_round_trips(gateway_id: str) -> None:
    cfg = parse(toml_text("gateway", "id", toml_string(gateway_id)))
    assert cfg.gateway.id == gateway_id
    assert cfg.mqtt.client_id == f"gatewayd-{gateway_id}"


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ("[]", ("thermo-v1",)),
        ('["thermo-v2"]', ("thermo-v1", "thermo-v2")),
        ('["thermo-v2", "thermo-v1", "thermo-v2"]', ("thermo-v1", "thermo-v2")),
        ('["thermo-v1"]', ("thermo-v1",)),
    ],
)
def test_models_always_include_model(models: str, expected: tuple[str, ...]) -> None:
    assert parse_one("exosite", "models", models).exosite.models == expected


def test_models_default_to_model_when_built_directly() -> None:
    assert ExositeConfig(vendor="acme", model="m").models == ("m",)


def test_murano_requires_its_own_url() -> None:
    exc = error_of(toml_text("exosite", "api", '"murano"'))
    assert exc.key == "exosite.url"
    assert "required with api = 'murano'" in str(exc)
    assert "https://<product_id>.m2.exosite.io" in str(exc)
    exc = error_of(
        toml_text("exosite", "api", '"murano"', exosite__url='"https://m2.exosite.com/"')
    )
    assert exc.key == "exosite.url"


def test_murano_with_a_product_url() -> None:
    cfg = parse_one("exosite", "api", '"murano"', exosite__url='"https://abc123.m2.exosite.io/"')
    assert cfg.exosite.api == "murano"
    assert cfg.exosite.url == "https://abc123.m2.exosite.io"


# -- the example file -------------------------------------------------------------------


def example_sections() -> dict[str, list[str]]:
    """The example file's lines, by section."""
    sections: dict[str, list[str]] = {}
    lines = sections.setdefault("", [])
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            lines = sections.setdefault(header[1], [])
        else:
            lines.append(line)
    return sections


def uncommented_example() -> str:
    """The example file with every commented-out key set."""
    text = EXAMPLE.read_text(encoding="utf-8")
    return re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)


def test_the_example_documents_every_key_in_its_section() -> None:
    sections = example_sections()
    assert set(sections) - {""} == set(schema.SECTIONS)
    for name, cls in schema.SECTIONS.items():
        documented = {m[1] for line in sections[name] if (m := re.match(r"(?:# )?(\w+) = ", line))}
        assert documented == {f.name for f in dataclasses.fields(cls)}, name


def test_the_example_explains_every_key() -> None:
    explained = set()
    for name, lines in example_sections().items():
        for i, line in enumerate(lines):
            if key := re.match(r"(?:# )?(\w+) = ", line):
                assert lines[i - 1].startswith("# "), f"[{name}] {line}"
                assert not re.match(r"# \w+ = ", lines[i - 1]), f"[{name}] {line}"
                explained.add((name, key[1]))
    keys = {
        (name, f.name) for name, cls in schema.SECTIONS.items() for f in dataclasses.fields(cls)
    }
    assert explained == keys


def test_the_example_sets_only_vendor_and_model() -> None:
    assert tomllib.loads(EXAMPLE.read_text(encoding="utf-8")) == {
        "gateway": {},
        "mqtt": {},
        "exosite": {"vendor": "acme", "model": "thermo-v1"},
        "keyring": {},
        "nodes": {},
    }


def test_the_example_loads_with_the_defaults() -> None:
    cfg = load(EXAMPLE)
    assert cfg.source == str(EXAMPLE)
    assert dataclasses.replace(cfg, source=SOURCE) == parse(toml_text(), SOURCE)


def test_the_commented_values_are_the_defaults() -> None:
    cfg = parse(uncommented_example(), "example")
    for name in schema.SECTIONS:
        section, default = getattr(cfg, name), getattr(parse(toml_text()), name)
        for f in dataclasses.fields(section):
            value, expected = getattr(section, f.name), getattr(default, f.name)
            if f.default is None:
                assert value is not None, f"{name}.{f.name} shows no example"
            elif (name, f.name) not in {("gateway", "id"), ("mqtt", "client_id")}:
                assert value == expected, f"{name}.{f.name}"
    assert cfg.mqtt.client_id == f"gatewayd-{cfg.gateway.id}"


# -- load -------------------------------------------------------------------------------


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml_text("mqtt", "port", "8883"), encoding="utf-8")
    cfg = load(path)
    assert cfg.source == str(path)
    assert cfg.mqtt.port == 8883


def test_load_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml_text(), encoding="utf-8-sig")
    assert load(path).exosite.vendor == "acme"


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.source == str(path)
    assert str(info.value) == f"{path}: cannot read the file: No such file or directory"


def test_load_names_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: cannot read the file"):
        load(tmp_path)


def test_load_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[gateway]\nid = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(line 2\)"):
        load(path)


def test_load_names_file_and_line_of_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml_text() + "[mqtt]\nport = = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: not valid TOML: ")
    assert "line 5" in str(info.value)


def test_load_names_the_file_in_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml_text("exosite", "timeout", "0"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: exosite.timeout: expected ")
