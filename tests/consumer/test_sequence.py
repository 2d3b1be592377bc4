"""SequenceTracker: duplicates, sequence gaps, new epochs and the bridge's gap status."""

from __future__ import annotations

import pytest

from bridge.consumer import (
    BridgeGap,
    Duplicate,
    Message,
    Report,
    SequenceGap,
    SequenceTracker,
    parse_message,
)
from tests.consumer.bodies import HANGUP, event_body, gap_status


def hangup(seq: int, *, epoch: int = 1, server: str = "pbx1") -> Message:
    return parse_message(event_body(HANGUP, server=server, epoch=epoch, seq=seq))


def tracker(*, track_gaps: bool = True, window: int = 100) -> tuple[SequenceTracker, list[Report]]:
    reports: list[Report] = []
    return SequenceTracker(track_gaps=track_gaps, window=window, on_report=reports.append), reports


def feed(tracker: SequenceTracker, *messages: Message) -> list[bool]:
    """Observe and handle each message, as a consumer does; the observe() results."""
    results = []
    for message in messages:
        is_new = tracker.observe(message)
        if is_new:
            tracker.handled(message)
        results.append(is_new)
    return results


def test_a_handled_id_seen_again_is_a_duplicate() -> None:
    seq_tracker, reports = tracker()

    assert feed(seq_tracker, hangup(1), hangup(2), hangup(2), hangup(1)) == [
        True,
        True,
        False,
        False,
    ]
    assert reports == [Duplicate("pbx1", "pbx1:1:2"), Duplicate("pbx1", "pbx1:1:1")]
    assert seq_tracker.duplicates == 2


def test_duplicates_are_detected_with_gap_tracking_off() -> None:
    seq_tracker, reports = tracker(track_gaps=False)

    assert feed(seq_tracker, hangup(1), hangup(5), hangup(5)) == [True, True, False]
    assert reports == [Duplicate("pbx1", "pbx1:1:5")]
    assert seq_tracker.sequence_gaps == 0


def test_a_message_that_was_not_handled_is_no_duplicate_when_redelivered() -> None:
    seq_tracker, reports = tracker()
    first = hangup(1)

    assert seq_tracker.observe(first)  # the handler fails: never handled()
    assert seq_tracker.observe(first)  # the redelivery
    assert reports == []


def test_duplicate_memory_is_bounded_by_the_window() -> None:
    seq_tracker, _ = tracker(window=3)
    feed(seq_tracker, *(hangup(seq) for seq in range(1, 6)))

    # 1 and 2 fell out of the window: a late copy is no longer recognised.
    assert [seq_tracker.observe(hangup(seq)) for seq in range(1, 6)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_jump_within_an_epoch_is_a_gap_with_what_was_expected() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(1, epoch=7), hangup(2, epoch=7), hangup(6, epoch=7))

    assert reports == [SequenceGap("pbx1", 7, expected=3, got=6)]
    assert reports[0].missing == 3  # type: ignore[union-attr]
    assert (seq_tracker.sequence_gaps, seq_tracker.missing) == (1, 3)


def test_the_first_message_of_a_server_sets_the_baseline() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(500), hangup(501))

    assert reports == []


def test_a_requeued_message_coming_back_late_is_neither_gap_nor_duplicate() -> None:
    seq_tracker, reports = tracker()
    feed(seq_tracker, hangup(1))
    assert seq_tracker.observe(hangup(2))  # its handler fails, so it is requeued

    assert feed(seq_tracker, hangup(3), hangup(4), hangup(2)) == [True, True, True]
    assert reports == []


def test_servers_are_tracked_separately() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(1, server="a"), hangup(10, server="b"), hangup(2, server="a"))
    feed(seq_tracker, hangup(12, server="b"))

    assert reports == [SequenceGap("b", 1, expected=11, got=12)]


def test_a_new_epoch_starts_the_numbering_afresh() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(1, epoch=1), hangup(2, epoch=1))
    feed(seq_tracker, hangup(1, epoch=2), hangup(2, epoch=2), hangup(3, epoch=2))

    assert reports == []


def test_a_new_epoch_that_does_not_start_at_one_misses_its_first_messages() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(1, epoch=1), hangup(3, epoch=2))

    assert reports == [SequenceGap("pbx1", 2, expected=1, got=3)]


def test_a_message_of_an_earlier_epoch_is_late_not_a_gap() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(1, epoch=2), hangup(2, epoch=2), hangup(40, epoch=1))
    feed(seq_tracker, hangup(3, epoch=2))

    assert reports == []


def test_the_same_seq_in_another_epoch_is_no_duplicate() -> None:
    seq_tracker, _ = tracker()

    assert feed(seq_tracker, hangup(1, epoch=1), hangup(1, epoch=2)) == [True, True]


def test_the_bridge_gap_status_is_reported_even_without_gap_tracking() -> None:
    seq_tracker, reports = tracker(track_gaps=False)

    feed(seq_tracker, hangup(41, epoch=1), parse_message(gap_status(epoch=2, seq=1)))

    assert reports == [BridgeGap("pbx1", 1, 41, 2.5, "connection reset")]
    assert seq_tracker.bridge_gaps == 1
    assert "disconnected for 2.5 s" in str(reports[0])


def test_the_bridge_gap_status_starts_the_new_epoch() -> None:
    seq_tracker, reports = tracker()

    feed(seq_tracker, hangup(41, epoch=1), parse_message(gap_status(epoch=2, seq=1)))
    feed(seq_tracker, hangup(2, epoch=2), hangup(3, epoch=2))

    assert [type(report) for report in reports] == [BridgeGap]


def test_reports_are_counted_without_a_callback() -> None:
    seq_tracker = SequenceTracker(track_gaps=True)

    feed(seq_tracker, hangup(1), hangup(1), hangup(4))

    assert (seq_tracker.duplicates, seq_tracker.sequence_gaps, seq_tracker.missing) == (1, 1, 2)


def test_the_window_must_hold_an_id() -> None:
    with pytest.raises(ValueError, match="window"):
        SequenceTracker(window=0)
