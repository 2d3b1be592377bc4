"""The examples' logic, fed the messages the bridge publishes for simulated PBX traffic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from bridge.ami.shapes import CAUSES
from bridge.consumer import EventMessage, Message, parse_message
from bridge.events.generated import Hangup
from tests.consumer.bodies import HANGUP, event_body, simulated_bodies
from tests.support.scripts import import_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """A fresh import of ``examples/<name>.py``."""
    return import_script(EXAMPLES / f"{name}.py", f"examples_{name}")


@pytest.fixture(scope="module")
def traffic() -> list[Message]:
    return [parse_message(body) for body in simulated_bodies(3000, seed=11)]


def peer_status(peer: str, status: str, extra: str = "") -> Message:
    text = f"Event: PeerStatus\nPrivilege: system,all\nPeer: {peer}\nPeerStatus: {status}\n"
    return parse_message(event_body(text + extra))


# -- hangup_counter -------------------------------------------------------------------


def test_hangup_counter_counts_every_hangup_by_cause(traffic: list[Message]) -> None:
    counter = load_example("hangup_counter").HangupCounter()

    counted = sum(counter.observe(message) for message in traffic)

    hangups = [m.fields for m in traffic if isinstance(m.fields, Hangup)]
    assert counted == len(hangups) > 20
    assert counter.counts == Counter((fields.Cause, fields.Cause_txt) for fields in hangups)
    assert set(counter.counts) <= set(CAUSES.items())


def test_hangup_counter_table_lists_causes_by_frequency() -> None:
    counter = load_example("hangup_counter").HangupCounter()
    for _ in range(2):
        counter.observe(parse_message(event_body(HANGUP)))
    counter.observe(
        parse_message(
            event_body(HANGUP.replace("21", "16").replace("Call Rejected", "Normal Clearing"))
        )
    )

    rows = counter.table().splitlines()

    assert rows[1].split() == ["21", "Call", "Rejected", "2"]
    assert rows[2].split() == ["16", "Normal", "Clearing", "1"]
    assert rows[-1].split() == ["total", "3"]


# -- peer_watcher ---------------------------------------------------------------------


def test_peer_watcher_follows_registration_and_reachability() -> None:
    watcher = load_example("peer_watcher").PeerWatcher()

    lines = [
        watcher.observe(peer_status("PJSIP/101", "Registered", "Address: 192.0.2.10:5060\n")),
        watcher.observe(peer_status("PJSIP/101", "Reachable", "Time: 23\n")),
        watcher.observe(peer_status("PJSIP/101", "Unreachable")),
        watcher.observe(peer_status("PJSIP/101", "Unregistered")),
    ]

    assert lines == [
        "pbx1 PJSIP/101: Registered -> registered from 192.0.2.10:5060",
        "pbx1 PJSIP/101: Reachable -> registered from 192.0.2.10:5060; reachable, 23 ms",
        "pbx1 PJSIP/101: Unreachable -> registered from 192.0.2.10:5060; UNREACHABLE",
        "pbx1 PJSIP/101: Unregistered -> unregistered; UNREACHABLE",
    ]


def test_peer_watcher_takes_time_minus_one_as_unreachable() -> None:
    watcher = load_example("peer_watcher").PeerWatcher()
    watcher.observe(peer_status("SIP/102", "Reachable", "Time: 12\n"))

    line = watcher.observe(peer_status("SIP/102", "Lagged", "Time: -1\n"))

    assert line == "pbx1 SIP/102: Lagged -> UNREACHABLE"
    state = watcher.peers[("pbx1", "SIP/102")]
    assert (state.reachable, state.latency_ms) == (False, None)


def test_peer_watcher_ignores_other_events_and_summarises_simulated_peers(
    traffic: list[Message],
) -> None:
    watcher = load_example("peer_watcher").PeerWatcher()

    lines = [line for m in traffic if (line := watcher.observe(m)) is not None]

    statuses = [m for m in traffic if m.event == "PeerStatus"]
    assert len(lines) == len(statuses) > 0
    summary = watcher.summary().splitlines()
    assert len(summary) == len(watcher.peers)
    assert all(line.startswith("pbx1 PJSIP/") for line in summary)


# -- call_tracker ---------------------------------------------------------------------


def test_call_tracker_follows_the_first_new_call_to_its_last_hangup(
    traffic: list[Message],
) -> None:
    tracker = load_example("call_tracker").CallTracker()

    finished_at = next(i for i, m in enumerate(traffic) if tracker.observe(m))

    linkedid = tracker.linkedid
    call = [
        m
        for m in traffic[: finished_at + 1]
        if isinstance(m, EventMessage) and getattr(m.fields, "Linkedid", None) == linkedid
    ]
    assert [step.event for step in tracker.steps] == [m.event for m in call]
    assert tracker.steps[0].event == "Newchannel"
    assert tracker.steps[-1].event == "Hangup"
    assert len(tracker.channels) == 2  # caller and callee legs
    hangups = [m.fields for m in call if isinstance(m.fields, Hangup)]
    assert {fields.Uniqueid for fields in hangups} == tracker.channels
    assert not tracker.open_channels


def test_call_tracker_timeline_is_relative_to_the_first_event(traffic: list[Message]) -> None:
    tracker = load_example("call_tracker").CallTracker()
    for message in traffic:
        if tracker.observe(message):
            break

    lines = tracker.timeline().splitlines()

    assert lines[0] == (f"call {tracker.linkedid}: 2 channels, {len(tracker.steps)} events")
    assert lines[1].startswith("   +0.000s  Newchannel     Channel=PJSIP/")
    assert " Hangup " in lines[-1]
    assert "Cause=" in lines[-1]


def test_call_tracker_can_follow_a_given_call_from_the_middle(traffic: list[Message]) -> None:
    first = load_example("call_tracker").CallTracker()
    for message in traffic:
        if first.observe(message):
            break
    wanted = load_example("call_tracker").CallTracker(linkedid=first.linkedid)

    # Start after the Newchannel of the first leg: the rest of the call is still followed.
    start = next(i for i, m in enumerate(traffic) if m.event == "Newchannel") + 1
    done = [wanted.observe(m) for m in traffic[start:]]

    assert any(done)
    assert wanted.steps[-1].event == "Hangup"
    assert len(wanted.steps) == len(first.steps) - 1
