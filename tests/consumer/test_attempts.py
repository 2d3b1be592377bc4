"""AttemptCounter: attempt numbers from the quorum queue's count or counted in memory."""

from __future__ import annotations

import pytest

from bridge.consumer.attempts import DELIVERY_COUNT_HEADER, AttemptCounter


def test_a_quorum_queue_numbers_attempts_from_its_delivery_count() -> None:
    counter = AttemptCounter(3, broker_counts=True)

    assert counter.attempt("m", {}) == 1
    assert counter.attempt("m", {DELIVERY_COUNT_HEADER: 2}) == 3
    assert counter.failed("m", 2) is False
    assert counter.failed("m", 3) is True


def test_a_classic_queue_counts_failures_per_message_id() -> None:
    counter = AttemptCounter(3, broker_counts=False)

    attempts = []
    for _ in range(3):
        attempt = counter.attempt("m", {})
        attempts.append((attempt, counter.failed("m", attempt)))

    assert attempts == [(1, False), (2, False), (3, True)]
    assert counter.attempt("m", {}) == 1  # forgotten once dead-lettered
    assert counter.attempt("other", {}) == 1


def test_a_handled_message_is_forgotten() -> None:
    counter = AttemptCounter(5, broker_counts=False)
    counter.failed("m", 1)

    counter.settled("m")

    assert counter.attempt("m", {}) == 1


def test_one_attempt_means_the_first_failure_is_final() -> None:
    assert AttemptCounter(1, broker_counts=False).failed("m", 1) is True


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        AttemptCounter(0, broker_counts=True)
