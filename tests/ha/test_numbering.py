"""What a member of a pair publishes under: epochs minted per lock turn, seq from 1."""

from __future__ import annotations

from bridge.ami.protocol import Event
from bridge.ami.session import EpochClock
from bridge.ha.numbering import PublishedNumbering
from bridge.publish.records import Record, decode, encode_event, encode_status

RAW = b"Event: UserEvent\nPrivilege: user,all\nUserEvent: a"


def event(epoch: int, seq: int) -> Record:
    return decode(encode_event(epoch, seq, 1.0, Event.from_raw(RAW), event_id=f"fp:x:{seq}"))


def gap(epoch: int, seq: int, previous_epoch: int, last_seq: int) -> Record:
    fields = {
        "previous_epoch": previous_epoch,
        "last_seq": last_seq,
        "disconnected_for": 1.5,
        "reason": "reset",
    }
    return decode(encode_status(epoch, seq, 2.0, "gap", fields))


def test_the_epoch_clock_mints_above_what_it_observed() -> None:
    clock = EpochClock()
    first = clock()
    clock.observe(first + 10_000)
    assert clock() == first + 10_001
    clock.observe(5)  # an older epoch changes nothing
    assert clock() == first + 10_002


def test_each_journal_epoch_gets_a_fresh_one_and_seq_counts_from_one() -> None:
    clock = EpochClock()
    numbering = PublishedNumbering(clock)
    numbering.restart()
    before = clock()
    published = [numbering.published(r) for r in (event(7, 40), event(7, 41), event(7, 44))]
    published.append(numbering.published(event(9, 1)))
    epochs = [r.epoch for r in published]
    assert epochs[0] == epochs[1] == epochs[2] > before
    assert epochs[3] > epochs[0]
    assert numbering.latest == epochs[3]
    # From 1, and the gap between 41 and 44 is kept for consumers to see.
    assert [r.seq for r in published] == [1, 2, 5, 1]
    assert [r.event_id for r in published[:3]] == ["fp:x:40", "fp:x:41", "fp:x:44"]
    assert published[0].payload == RAW


def test_a_record_published_again_in_the_same_turn_keeps_its_numbers() -> None:
    numbering = PublishedNumbering(EpochClock())
    numbering.restart()
    first = numbering.published(event(7, 40))
    numbering.published(event(7, 41))
    again = numbering.published(event(7, 40))  # a broker outage: the journal rewound
    assert (again.epoch, again.seq) == (first.epoch, first.seq)


def test_a_new_turn_publishes_under_new_epochs() -> None:
    numbering = PublishedNumbering(EpochClock())
    numbering.restart()
    first = numbering.published(event(7, 40))
    numbering.restart()
    second = numbering.published(event(7, 40))
    assert second.epoch > first.epoch
    assert second.seq == 1


def test_a_gap_status_names_the_published_numbers_of_the_connection_before() -> None:
    numbering = PublishedNumbering(EpochClock())
    numbering.restart()
    old = [numbering.published(event(7, seq)) for seq in (40, 41, 42)]
    renumbered = numbering.published(gap(8, 1, previous_epoch=7, last_seq=43))
    status, fields = renumbered.status()
    assert status == "gap"
    assert renumbered.epoch > old[0].epoch
    assert renumbered.seq == 1
    assert (fields["previous_epoch"], fields["last_seq"]) == (old[0].epoch, 4)
    assert (fields["disconnected_for"], fields["reason"]) == (1.5, "reset")


def test_a_gap_after_a_connection_never_published_in_this_turn_names_none() -> None:
    numbering = PublishedNumbering(EpochClock())
    numbering.restart()
    _, fields = numbering.published(gap(8, 1, previous_epoch=7, last_seq=43)).status()
    assert (fields["previous_epoch"], fields["last_seq"]) == (0, 0)


def test_two_members_logging_in_together_never_share_an_id() -> None:
    """The same journal numbers on both members (a login in the same millisecond, or
    statuses of epoch 0 before any login) are published under distinct ids."""
    clock_a, clock_b = EpochClock(), EpochClock()  # two processes
    a, b = PublishedNumbering(clock_a), PublishedNumbering(clock_b)
    a.restart()
    published_a = {(r.epoch, r.seq) for r in (a.published(event(0, n)) for n in range(1, 50))}
    assert a.latest is not None
    b.observe(a.latest)  # b, the standby, saw a checkpoint of a
    b.restart()  # a died; b takes over
    published_b = {(r.epoch, r.seq) for r in (b.published(event(0, n)) for n in range(1, 50))}
    assert not published_a & published_b
    assert min(e for e, _ in published_b) > max(e for e, _ in published_a)


def test_the_standby_mints_above_the_checkpoint_even_with_its_clock_behind() -> None:
    clock_b = EpochClock()
    b = PublishedNumbering(clock_b)
    ahead = clock_b() + 3_600_000  # the active's clock is an hour ahead
    b.observe(ahead)
    b.restart()
    assert b.published(event(5, 1)).epoch > ahead
