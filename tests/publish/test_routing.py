"""Routing keys: layout, escaping, template validation and server ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.publish.routing import (
    DEFAULT_TEMPLATE,
    BridgeStatus,
    Router,
    RoutingTemplate,
    escape_segment,
    event_class,
    unescape_segment,
    validate_server_id,
)


def test_default_layout_is_server_class_event_lower_case() -> None:
    router = Router("PBX1")
    assert router.event_key("Newchannel", "call") == "pbx1.call.newchannel"
    assert router.event_key("FullyBooted", event_class(["system", "all"])) == (
        "pbx1.system.fullybooted"
    )


@pytest.mark.parametrize(
    ("privileges", "expected"),
    [
        (["call", "all"], "call"),
        (["all", "Agent"], "agent"),
        (["system", "user"], "system"),
        ([" dialplan ", "all"], "dialplan"),
        (["all"], "none"),
        ([], "none"),
        ([""], "none"),
    ],
)
def test_event_class_is_the_first_class_other_than_all(
    privileges: list[str], expected: str
) -> None:
    assert event_class(privileges) == expected


def test_invalid_records_and_bridge_status_have_fixed_layouts() -> None:
    router = Router("pbx-2_a")
    assert router.invalid_key("Newchannel") == "pbx-2_a.invalid.newchannel"
    assert router.invalid_key("Odd.Name") == "pbx-2_a.invalid.odd%2Ename"
    assert [router.bridge_key(s) for s in BridgeStatus] == [
        "pbx-2_a.bridge.connected",
        "pbx-2_a.bridge.disconnected",
        "pbx-2_a.bridge.gap",
        "pbx-2_a.bridge.overflow",
        "pbx-2_a.bridge.resync",
        "pbx-2_a.bridge.refused",
        "pbx-2_a.bridge.journal",
        "pbx-2_a.bridge.active",
    ]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("%", "%25"),
        (".", "%2E"),
        ("*", "%2A"),
        ("#", "%23"),
        (" ", "%20"),
        ("\t", "%09"),
        ("\r\n", "%0D%0A"),
        ("\x0b\x0c", "%0B%0C"),
        ("\xa0", "%C2%A0"),
        ("\u3000", "%E3%80%80"),
        ("\x00\x7f", "%00%7F"),
        ("\udcff", "%FF"),  # a surrogate escape stands for the byte it came from
        ("A.b*C#d%e f", "a%2Eb%2Ac%23d%25e%20f"),
        ("Plain_Name-1", "plain_name-1"),
        ("ÄÖ", "äö"),
    ],
)
def test_escape_segment(raw: str, escaped: str) -> None:
    assert escape_segment(raw) == escaped
    assert unescape_segment(escaped) == raw.lower()


def test_escaped_event_cannot_change_the_key_shape() -> None:
    key = Router("pbx1").event_key("a.#.*", "call")
    assert key == "pbx1.call.a%2E%23%2E%2A"
    assert key.count(".") == 2


def test_custom_template() -> None:
    router = Router("pbx1", "ami.{server}.{event}.{class}")
    assert router.event_key("Hangup", "call") == "ami.pbx1.hangup.call"
    assert router.template.dots == 3
    assert RoutingTemplate("{{x}}.{event}").render("s", "c", "E") == "{x}.e"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{server}.{klass}.{event}", "unknown placeholder {klass}"),
        ("{server}.{0}", "unknown placeholder {0}"),
        ("{server}.{}", "unknown placeholder {}"),
        ("{server!r}.{event}", "no format spec or conversion"),
        ("{server}.{event:>10}", "no format spec or conversion"),
        ("{server.x}", "unknown placeholder"),
        ("{server", "expected '}'"),
        ("server}", "Single '}'"),
        ("static.key", "has no placeholder"),
        ("", "has no placeholder"),
        ("{server}..{event}", "empty segment"),
        (".{event}", "empty segment"),
        ("{event}.", "empty segment"),
        ("a*.{event}", "may not hold"),
        ("#.{event}", "may not hold"),
        ("a b.{event}", "may not hold"),
    ],
)
def test_bad_templates_are_config_errors(template: str, message: str) -> None:
    with pytest.raises(ValueError, match="routing key template") as info:
        RoutingTemplate(template)
    assert message in str(info.value)


@pytest.mark.parametrize("server", ["", "pbx.1", "pbx 1", "pbx*", "pbx#", "pbx/1", "pbé"])
def test_bad_server_ids_are_config_errors(server: str) -> None:
    with pytest.raises(ValueError, match="invalid server id"):
        validate_server_id(server)
    with pytest.raises(ValueError, match="invalid server id"):
        Router(server)


def test_good_server_ids() -> None:
    for server in ["pbx1", "PBX-1", "a_b", "0", "x" * 200]:
        assert validate_server_id(server) == server


_templates = st.sampled_from(
    [DEFAULT_TEMPLATE, "ami.{server}.{class}.{event}", "{event}", "x-{server}.{event}.y"]
)


@given(template=_templates, cls=st.text(), event=st.text())
def test_escaped_key_has_the_template_dot_count_and_round_trips(
    template: str, cls: str, event: str
) -> None:
    compiled = RoutingTemplate(template)
    key = compiled.render("pbx1", cls, event)
    assert key.count(".") == compiled.dots == template.count(".")
    assert "*" not in key
    assert "#" not in key
    assert not any(c.isspace() for c in key)
    key.encode()  # always sendable as UTF-8
    expected = RoutingTemplate(template).render("pbx1", "CLS", "EVT").split(".")
    for segment, shape in zip(key.split("."), expected, strict=True):
        if shape == "evt":
            assert unescape_segment(segment) == event.lower()
        elif shape == "cls":
            assert unescape_segment(segment) == cls.lower()


@given(st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_unescape_reverses_escape(text: str) -> None:
    assert unescape_segment(escape_segment(text)) == text.lower()


def test_router_caches_keys() -> None:
    router = Router("pbx1")
    assert router.event_key("Newchannel", "call") is router.event_key("Newchannel", "call")
