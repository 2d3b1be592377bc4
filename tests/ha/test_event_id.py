"""The PBX-wide event id, its journal record form and the standby's follower."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.protocol import Event
from bridge.ha.event_id import EventIds
from bridge.ha.follower import Follower
from bridge.publish.journal import Journal
from bridge.publish.records import decode, encode_event, encode_status

A = b"Event: UserEvent\nPrivilege: user,all\nUserEvent: a"
B = b"Event: UserEvent\nPrivilege: user,all\nUserEvent: b"


def test_two_members_reading_one_stream_compute_the_same_ids() -> None:
    stream = [A, B, A, A, B]
    first, second = EventIds(), EventIds()
    ids = [first.next(raw) for raw in stream]
    assert ids == [second.next(raw) for raw in stream]
    assert len(set(ids)) == len(ids)  # byte-identical events told apart by their count
    assert [ids[0][-2:], ids[2][-2:], ids[3][-2:]] == [":0", ":1", ":2"]


def test_the_occurrence_count_is_bounded_by_the_window() -> None:
    ids = EventIds(window=2)
    assert [ids.next(A)[-2:] for _ in range(4)] == [":0", ":1", ":2", ":2"]


def test_sequence_number_wins_over_the_fingerprint() -> None:
    raw = b"Event: Hangup\nPrivilege: call,all\nSequenceNumber: 90211\nFile: x.c"
    assert EventIds().next(raw) == "sn:90211"


def test_records_keep_the_event_id_and_old_records_read_back() -> None:
    event = Event.from_raw(A)
    record = decode(encode_event(1, 2, 3.0, event, snapshot=True, event_id="fp:ab:0"))
    assert (record.event_id, record.snapshot, record.payload) == ("fp:ab:0", True, A)
    plain = decode(encode_event(1, 2, 3.0, event))
    assert (plain.event_id, plain.payload) == (None, A)


def test_the_follower_retires_up_to_each_checkpoint(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        ids = EventIds()
        raws = [A, B, A]
        eids = [ids.next(r) for r in raws]
        records = [
            encode_event(1, n, 0.0, Event.from_raw(r), event_id=e)
            for n, (r, e) in enumerate(zip(raws, eids, strict=True))
        ]
        journal.append([encode_status(1, 0, 0.0, "connected", {}), *records])
        follower = Follower(journal)
        assert follower.checkpoint("fp:unknown:0") is False
        follower.follow()
        assert follower.checkpoint(eids[1]) is True
        assert journal.depth == 1  # only the last event is left to publish on takeover
        # A checkpoint naming an event not read yet waits, and is placed when it comes.
        late = ids.next(B)
        assert follower.checkpoint(late) is False
        journal.append([encode_event(1, 9, 0.0, Event.from_raw(B), event_id=late)])
        follower.follow()
        assert journal.depth == 0
        assert follower.placement().found is True
