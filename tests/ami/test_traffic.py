"""The traffic generator against the real Asterisk 22 captures and the 1.4 event doc."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from bridge.ami.protocol import AmiParser, Event, Header
from bridge.ami.shapes import CAUSES, format_duration
from bridge.ami.traffic import TrafficGenerator

FIXTURES = Path(__file__).parent.parent / "fixtures"
CATALOG = Path(__file__).parent.parent.parent / "bridge" / "events" / "catalog.json"
TIMESTAMP = re.compile(r"^\d+\.\d{6}$")


def fixed_clock() -> float:
    return 1795675153.848785


def generate(n: int, seed: int = 7, *, legacy: bool = False) -> list[list[Header]]:
    generator = TrafficGenerator(seed, legacy=legacy, clock=fixed_clock)
    return [generator.next_event() for _ in range(n)]


def capture_events(*names: str) -> list[Event]:
    events: list[Event] = []
    for name in names:
        parser = AmiParser()
        items = parser.feed((FIXTURES / "captures" / name).read_bytes()) + parser.feed_eof()
        events += [item for item in items if isinstance(item, Event)]
    return events


def body_keys(headers: list[Header] | tuple[Header, ...]) -> tuple[str, ...]:
    """Header keys without Event, Privilege and Timestamp, in wire order."""
    return tuple(k for k, _ in headers if k not in ("Event", "Privilege", "Timestamp"))


def test_modern_events_start_with_event_privilege_timestamp() -> None:
    for event in generate(3000):
        assert event[0][0] == "Event"
        assert event[1][0] == "Privilege"
        assert event[1][1].endswith(",all")
        assert event[2][0] == "Timestamp"
        assert TIMESTAMP.match(event[2][1]), event[2]


def test_modern_shapes_match_the_asterisk_22_captures() -> None:
    # Every generated key sequence must be one a real Asterisk 22 sent for that event.
    seen: dict[str, set[tuple[str, ...]]] = {}
    for captured in capture_events("calls-basic.ami", "reload.ami"):
        seen.setdefault(captured.name, set()).add(body_keys(captured.headers))
    generated = generate(5000)
    checked = Counter(e[0][1] for e in generated if e[0][1] in seen)
    for event in generated:
        if event[0][1] in seen:
            assert body_keys(event) in seen[event[0][1]], event
    for name in (
        "Newchannel",
        "Newstate",
        "Newexten",
        "VarSet",
        "NewCallerid",
        "DialBegin",
        "DialEnd",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeLeave",
        "BridgeDestroy",
        "HangupRequest",
        "Hangup",
        "Reload",
    ):
        assert checked[name] > 0, name


def test_modern_events_use_only_documented_fields_and_classes() -> None:
    catalog = {k.lower(): v for k, v in json.loads(CATALOG.read_text()).items()}
    for event in generate(5000):
        documented = catalog[event[0][1].lower()]
        assert set(body_keys(event)) <= set(documented["fields"]), event
        assert event[1][1] == f"{documented['classes'][0]},all"


def test_peer_status_is_pjsip_with_time_only_when_reachable() -> None:
    statuses: Counter[str] = Counter()
    for event in generate(20000):
        if event[0][1] != "PeerStatus":
            continue
        fields = dict(event)
        statuses[fields["PeerStatus"]] += 1
        assert fields["ChannelType"] == "PJSIP"
        assert re.fullmatch(r"PJSIP/1\d\d", fields["Peer"])
        assert ("Time" in fields) == (fields["PeerStatus"] == "Reachable")
        if fields["PeerStatus"] == "Reachable":
            assert int(fields["Time"]) > 0
    assert set(statuses) == {"Registered", "Reachable", "Unregistered", "Unreachable"}


def test_all_four_hangup_causes_appear_with_their_text() -> None:
    causes: Counter[str] = Counter()
    for event in generate(20000):
        if event[0][1] == "Hangup":
            fields = dict(event)
            assert fields["Cause-txt"] == CAUSES[int(fields["Cause"])]
            causes[fields["Cause"]] += 1
    assert set(causes) == {"16", "17", "19", "21"}
    assert causes["16"] > causes["17"]  # most calls are answered


def test_unanswered_calls_end_with_the_matching_dial_status() -> None:
    status_of: dict[str, str] = {}
    caller_cause: dict[str, str] = {}
    for event in generate(20000):
        fields = dict(event)
        if event[0][1] == "DialEnd":
            status_of[fields["Uniqueid"]] = fields["DialStatus"]
        elif event[0][1] == "Hangup" and fields["Uniqueid"] == fields["Linkedid"]:
            caller_cause[fields["Uniqueid"]] = fields["Cause"]
    expected = {"16": "ANSWER", "17": "BUSY", "19": "NOANSWER", "21": "NOANSWER"}
    pairs = {(cause, status_of[uid]) for uid, cause in caller_cause.items() if uid in status_of}
    assert pairs == set(expected.items())


def test_unknown_caller_names_appear_as_asterisk_writes_them() -> None:
    names = Counter(dict(e).get("CallerIDName") for e in generate(5000))
    assert names["<unknown>"] > 0
    assert names[""] == 0


def test_channel_model_tracks_newchannel_and_hangup() -> None:
    generator = TrafficGenerator(11, clock=fixed_clock)
    up: set[str] = set()
    for _ in range(4000):
        event = generator.next_event()
        fields = dict(event)
        if event[0][1] == "Newchannel":
            up.add(fields["Uniqueid"])
        elif event[0][1] == "Hangup":
            up.remove(fields["Uniqueid"])
        assert {c.uniqueid for c in generator.channels} == up
    assert up  # calls overlap: some are in progress at any time


def test_show_channels_matches_the_captured_core_show_channel() -> None:
    captured = {
        tuple(k for k, _ in e.headers if k not in ("Event", "ActionID"))
        for e in capture_events("actions.ami")
        if e.name == "CoreShowChannel"
    }
    generator = TrafficGenerator(5, clock=fixed_clock)
    while len(generator.channels) < 3:
        generator.next_event()
    bodies = generator.show_channels()
    assert len(bodies) == len(generator.channels)
    for body in bodies:
        assert tuple(k for k, _ in body) in captured
        assert dict(body)["Duration"] == "00:00:00"


def test_same_seed_same_sequence_and_other_seed_differs() -> None:
    assert generate(2000, seed=42) == generate(2000, seed=42)
    assert generate(200, seed=42) != generate(200, seed=43)


def _legacy_doc_keys() -> dict[str, set[str]]:
    """Event name -> lower-case keys, from the code blocks of the 1.4 event doc."""
    doc = (FIXTURES / "ami-events.rst").read_text()
    shapes: dict[str, set[str]] = {}
    for block in re.findall(r"\{[^{}]*\}", doc):
        pairs = dict(re.findall(r"u'([\w-]+)'\s*:\s*u'([^']*)'", block))
        if "event" in pairs:
            shapes.setdefault(pairs["event"], set()).update(pairs)
    return shapes


def test_legacy_shapes_match_the_asterisk_1_4_doc() -> None:
    doc = _legacy_doc_keys()
    doc["Unlink"] = doc["Link"]
    events = generate(30000, legacy=True)
    names = Counter(e[0][1] for e in events)
    for name in ("Newchannel", "Newstate", "Newexten", "Dial", "Newcallerid", "Link", "Unlink"):
        assert names[name] > 0, name
    for name in ("Hangup", "PeerStatus", "Reload", "ChannelReload"):
        assert names[name] > 0, name
    for event in events:
        assert "Timestamp" not in dict(event)
        keys = {k.lower() for k, _ in event}
        if event[0][1] == "PeerStatus":
            assert keys <= doc["PeerStatus"]
        else:
            assert keys == doc[event[0][1]], event


def test_legacy_channels_are_chan_sip_with_pointer_suffixes() -> None:
    channels = {dict(e)["Channel"] for e in generate(500, legacy=True) if e[0][1] == "Newchannel"}
    assert channels
    assert all(re.fullmatch(r"SIP/(1\d\d|trunk)-[0-9a-f]{8}", c) for c in channels)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "00:00:00"), (59.9, "00:00:59"), (3725, "01:02:05"), (-3, "00:00:00")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
