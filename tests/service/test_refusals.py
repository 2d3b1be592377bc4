"""The refusal policy: bounded retries with backoff, retirement, NO_ROUTE, one log line."""

from __future__ import annotations

import logging

import pytest

from bridge.service.refusals import LOG_INTERVAL, REDECLARE_INTERVAL, Refusals, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refusals(clock: Clock, retries: int = 3) -> Refusals[str, str]:
    return Refusals("pbx1", retries=retries, backoff=1.0, clock=clock)


def test_a_refused_message_is_retried_with_doubling_pauses_then_retired() -> None:
    clock = Clock()
    policy = refusals(clock)
    verdicts = []
    for pause in (1.0, 2.0, 4.0):
        verdict, attempts = policy.refused(7, "token", "msg", outcome="nacked", reason="x")
        verdicts.append((verdict, attempts))
        assert policy.next_due_in() == pytest.approx(pause)
        assert policy.take_due() == []
        clock.now += pause
        assert policy.take_due() == [("token", "msg")]
    verdict, attempts = policy.refused(7, "token", "msg", outcome="nacked", reason="x")
    assert verdicts == [(Verdict.RETRY, 1), (Verdict.RETRY, 2), (Verdict.RETRY, 3)]
    assert (verdict, attempts) == (Verdict.RETIRE, 4)
    assert policy.next_due_in() is None


def test_a_confirm_forgets_the_attempts() -> None:
    clock = Clock()
    policy = refusals(clock, retries=1)
    policy.refused(1, "t", "m", outcome="nacked", reason="x")
    policy.confirmed(1)
    assert policy.refused(1, "t", "m", outcome="nacked", reason="x") == (Verdict.RETRY, 1)


def test_due_retries_come_oldest_record_first_and_others_wait() -> None:
    clock = Clock()
    policy = refusals(clock)
    for record in (5, 3, 9):
        policy.refused(record, f"t{record}", f"m{record}", outcome="returned", reason="x")
    clock.now += 1.0
    assert [token for token, _ in policy.take_due()] == ["t3", "t5", "t9"]


def test_too_many_waiting_retires_the_newcomers() -> None:
    clock = Clock()
    policy = Refusals[str, str]("pbx1", retries=5, backoff=1.0, clock=clock, max_waiting=2)
    assert policy.refused(1, "t", "m", outcome="nacked", reason="x")[0] is Verdict.RETRY
    assert policy.refused(2, "t", "m", outcome="nacked", reason="x")[0] is Verdict.RETRY
    assert policy.refused(3, "t", "m", outcome="nacked", reason="x")[0] is Verdict.RETIRE


def test_no_route_asks_for_the_topology_at_most_every_interval() -> None:
    clock = Clock()
    policy = refusals(clock)
    assert not policy.redeclare_due
    policy.refused(1, "t", "m", outcome="returned", reason="312 NO_ROUTE", reply_code=312)
    assert policy.redeclare_due
    assert not policy.redeclare_due
    policy.refused(2, "t", "m", outcome="returned", reason="312 NO_ROUTE", reply_code=312)
    assert not policy.redeclare_due  # too soon
    clock.now += REDECLARE_INTERVAL
    assert policy.redeclare_due


def test_a_flood_of_refusals_is_one_line_then_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    policy = refusals(clock)
    with caplog.at_level(logging.WARNING, logger="bridge.service.refusals"):
        for record in range(1000):
            policy.refused(record, "t", "m", outcome="nacked", reason="nacked by the broker")
        policy.flush_log()
        assert len(caplog.records) == 1
        clock.now += LOG_INTERVAL
        policy.flush_log()
        policy.flush_log()
    assert len(caplog.records) == 2
    assert "refused 999 more messages" in caplog.records[1].getMessage()
