"""Every integer-typed field is an integer in every Asterisk release, with the evidence.

A field typed ``int`` sends an event to ``extra`` (as drift) when Asterisk writes text
there, so each one must be traced to the code.  Most are: ``bridge/events/emitted.json``
holds the ``printf`` conversion behind every header the code writes, in every release
from 11.25.3 to master (``scripts/extract_emitted.py``).  The rest are written from a
JSON blob, where the conversion is the blob's ``ast_json_pack`` type (``i``: printed
as ``"%s: %jd"`` by ``manager_json_value_str_append`` in ``main/manager.c``) or a
helper's format string: :data:`OTHER_EVIDENCE` quotes each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.protocol import Event
from bridge.events import REGISTRY, Validated, generated, legacy, model_for, validate
from bridge.events.fieldmap import field_map

EMITTED: dict[str, Any] = json.loads(
    (Path(generated.__file__).parent / "emitted.json").read_text(encoding="utf-8")
)
_CODE = {name.lower(): entry["fields"] for name, entry in EMITTED["events"].items()}
_SNAPSHOT = {
    base: facts["type"]
    for group in EMITTED["snapshots"].values()
    for base, facts in group["fields"].items()
}
_INT_CONVERSION = re.compile(r": (%[-+ 0]*\d*(?:hh|h|ll|l|j|z|t|q)?[diu]|-?\d+)$")

_QUEUE_MEMBER_BLOB = (
    '22.10.1 apps/app_queue.c queue_member_blob_create: ast_json_pack("{... s: i ...}", '
    '... "Penalty", mem->penalty, "CallsTaken", mem->calls, "LastCall", '
    '(int)mem->lastcall, "LastPause", (int)mem->lastpause, "LoginTime", '
    '(int)mem->logintime, ... "Wrapuptime", mem->wrapuptime)'
)
_QUEUE_MEMBER_EVENTS = frozenset(
    {
        "QueueMemberAdded",
        "QueueMemberPause",
        "QueueMemberPenalty",
        "QueueMemberRemoved",
        "QueueMemberRinginuse",
        "QueueMemberStatus",
    }
)
_PARKED_EVENTS = frozenset(
    {"ParkedCall", "ParkedCallGiveUp", "ParkedCallSwap", "ParkedCallTimeOut", "UnParkedCall"}
)
_PARKING = (
    "22.10.1 res/parking/parking_manager.c manager_build_parked_call_string: "
    '"ParkingSpace: %u\\r\\n" "ParkingTimeout: %lu\\r\\n" "ParkingDuration: %lu\\r\\n"'
)
_QUEUE_CALLER = (
    '22.10.1 apps/app_queue.c: ast_json_pack("{s: s, s: i, s: i}", "Queue", q->name, '
    '"Position", qe->pos, "Count", q->count) (QueueCallerJoin and QueueCallerLeave)'
)
_MEETME_DURATION = (
    '22.10.1 apps/app_meetme.c meetme_stasis_cb: ast_str_set(&user_prop_str, 0, "%d", '
    'duration); ast_str_append_event_header(&extra_text, "Duration", ...)'
)

#: Integer fields the extracted format strings do not show: field -> (events, evidence).
OTHER_EVIDENCE: dict[str, tuple[frozenset[str], str]] = {
    "CallsTaken": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "LastCall": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "LastPause": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "LoginTime": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "Penalty": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "Wrapuptime": (_QUEUE_MEMBER_EVENTS, _QUEUE_MEMBER_BLOB),
    "Count": (frozenset({"QueueCallerJoin", "QueueCallerLeave"}), _QUEUE_CALLER),
    "Position": (frozenset({"QueueCallerJoin", "QueueCallerLeave"}), _QUEUE_CALLER),
    "Duration": (frozenset({"MeetmeMute", "MeetmeTalking", "MeetmeTalkRequest"}), _MEETME_DURATION),
    "ParkingSpace": (_PARKED_EVENTS, _PARKING),
    "ParkingTimeout": (_PARKED_EVENTS, _PARKING),
    "ParkingDuration": (_PARKED_EVENTS, _PARKING),
    "User_Count": (
        frozenset({"ChannelReload"}),
        '1.4.44 channels/chan_sip.c: manager_event(EVENT_FLAG_SYSTEM, "ChannelReload", '
        '"Channel: SIP\\r\\nReloadReason: %s\\r\\nRegistry_Count: %d\\r\\nPeer_Count: '
        '%d\\r\\nUser_Count: %d\\r\\n", ...)',
    ),
}


def _int_fields() -> list[tuple[str, str]]:
    return sorted(
        (model.event_name, alias)
        for model in set(REGISTRY.values())
        for alias, _ in field_map(model).int_fields
    )


def _code_evidence(event: str, alias: str) -> list[str] | None:
    fields = _CODE.get(event.lower(), {})
    for name, facts in fields.items():
        if name.lower() == alias.lower():
            return list(facts["evidence"]) if facts["type"] == "int" else []
    for base, kind in _SNAPSHOT.items():
        if alias.endswith(base) and kind == "int":
            group = next(g for g in EMITTED["snapshots"].values() if base in g["fields"])
            return list(group["fields"][base]["evidence"])
    return None


@pytest.mark.parametrize(("event", "alias"), _int_fields(), ids="{0[0]}.{0[1]}".format)
def test_every_integer_field_has_evidence_that_asterisk_writes_a_number(
    event: str, alias: str
) -> None:
    evidence = _code_evidence(event, alias)
    if evidence is None:
        events, quote = OTHER_EVIDENCE[alias]
        assert event in events, f"{event}.{alias}: no evidence that it is always numeric"
        assert quote
        return
    # The code writes it: every writing, in every version, is an integer conversion.
    assert evidence, f"{event}.{alias}: the code writes it as text"
    for line in evidence:
        assert _INT_CONVERSION.search(line), line


def test_the_other_evidence_names_integer_fields_only() -> None:
    # 11 wrote some of these with manager_event; 12 and later from the blobs quoted.
    for alias, (events, _) in OTHER_EVIDENCE.items():
        for event in events:
            model = model_for(event)
            assert model is not None
            assert alias in dict(field_map(model).int_fields), (event, alias)


@pytest.mark.parametrize(
    ("event", "headers", "cause"),
    [
        # chan_iax2: PeerStatus on expiry, Registry on a rejected registration.
        ("PeerStatus", [("ChannelType", "IAX2"), ("Peer", "IAX2/trunk1")], "Expired"),
        (
            "Registry",
            [("ChannelType", "IAX2"), ("Username", "trunk"), ("Status", "Rejected")],
            "<unknown>",
        ),
        # chan_sip's registration failures, through stasis_endpoints.c ("Cause: %s").
        ("PeerStatus", [("ChannelType", "SIP"), ("Peer", "SIP/101")], "AUTH_SECRET_FAILED"),
        ("PeerStatus", [("ChannelType", "SIP"), ("Peer", "SIP/101")], "AUTH_PEER_NOT_DYNAMIC"),
        ("PeerStatus", [("ChannelType", "SIP"), ("Peer", "SIP/101")], "AUTH_USERNAME_MISMATCH"),
        ("PeerStatus", [("ChannelType", "SIP"), ("Peer", "SIP/101")], "URI_NOT_FOUND"),
        # chan_skinny
        (
            "PeerStatus",
            [("ChannelType", "Skinny"), ("Peer", "Skinny/dev1")],
            "LINE_ALREADY_CONNECTED",
        ),
    ],
)
def test_text_causes_of_real_asterisk_are_typed_events(
    event: str, headers: list[tuple[str, str]], cause: str
) -> None:
    status = [("PeerStatus", "Unregistered")] if event == "PeerStatus" else []
    message = Event(
        (("Event", event), ("Privilege", "system,all"), *headers, *status, ("Cause", cause))
    )
    result = validate(message)

    assert isinstance(result, Validated)
    assert result.fields["Cause"] == cause
    assert result.drift == ()
    assert type(result.model) is model_for(event)


def test_a_field_asterisk_may_one_day_fill_with_text_keeps_the_text_as_drift() -> None:
    # QueueMember's Penalty is "%d" in every release; text there is not foreseen.
    message = Event((("Event", "QueueMember"), ("Queue", "support"), ("Penalty", "high")))
    result = validate(message)

    assert isinstance(result, Validated)
    assert "Penalty" not in result.fields
    assert result.extra == {"Penalty": "high"}
    assert result.mistyped == ("Penalty",) == result.drift


def test_legacy_models_type_by_the_same_evidence() -> None:
    assert model_for("PeerStatus") is legacy.PeerStatus
    assert "Cause" not in dict(field_map(legacy.PeerStatus).int_fields)
    assert "Time" in dict(field_map(legacy.PeerStatus).int_fields)
