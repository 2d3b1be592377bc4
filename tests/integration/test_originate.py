"""An async Originate over the bus, matched to its OriginateResponse by ActionID.

The simulator answers Originate as Asterisk's ``action_originate`` does: "successfully
queued" at once, then an ``OriginateResponse`` event carrying the request's ActionID.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.ami.actions import PendingActions
from bridge.ami.simulator import AmiSimulator
from bridge.consumer import ActionOutcome, EventMessage
from bridge.events.rpc import ActionRequest
from bridge.service.rpc_client import ActionClient
from tests.cli.test_action import action
from tests.integration.harness import SECRET
from tests.integration.test_rpc import serving
from tests.support import AmqpNames, delete_names

ORIGINATE = {
    "Channel": "PJSIP/101",
    "Context": "from-internal",
    "Exten": "200",
    "Priority": "1",
    "Async": "true",
}


@pytest.fixture
async def rpc_exchange(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[str]:
    names = AmqpNames(f"{amqp_names.exchange}.actions")
    yield names.exchange
    await delete_names(amqp_url, names)


def test_a_correlation_value_goes_into_the_action_id_after_a_slash() -> None:
    actions = PendingActions()
    assert actions.new_id() == "amib-1"
    assert actions.new_id("job-42") == "amib-2/job-42"
    assert actions.new_id("job-42") == "amib-3/job-42"  # the number keeps them apart
    assert ActionRequest(action="Ping", correlation="a.b:c@d-1_2").correlation
    for bad in ("a/b", "", "x" * 65, "a b", "é"):
        with pytest.raises(ValidationError, match="correlation"):
            ActionRequest(action="Ping", correlation=bad)


async def test_an_async_originate_and_its_originate_response_are_matched(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        pbx.originate_delay = 0.3
        enabled = {"rpc_enable": ["Originate"]}
        async with serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx, **enabled):
            outcome = ActionOutcome(amqp_url, server="pbx1", exchange=amqp_names.exchange)
            async with outcome, ActionClient(amqp_url, exchange=rpc_exchange) as client:
                # Two clients using the same correlation value at once, and one without.
                replies = await asyncio.gather(
                    client.call("pbx1", "Originate", ORIGINATE, correlation="job-42", timeout=5),
                    client.call(
                        "pbx1",
                        "Originate",
                        {**ORIGINATE, "Channel": "PJSIP/102"},
                        correlation="job-42",
                        timeout=5,
                    ),
                    client.call(
                        "pbx1", "Originate", {**ORIGINATE, "Channel": "Fail/103"}, timeout=5
                    ),
                )
                assert all(reply.ok for reply in replies), replies
                events = [await outcome.wait(r.action_id or "", timeout=10) for r in replies]

    first, second, failing = replies
    assert first.response is not None
    assert first.response["Message"] == "Originate successfully queued"
    assert "ActionID" not in first.response
    for reply in (first, second):
        assert reply.action_id is not None
        assert re.fullmatch(r"amib-\d+/job-42", reply.action_id), reply.action_id
    assert first.action_id != second.action_id
    assert failing.action_id is not None
    assert re.fullmatch(r"amib-\d+", failing.action_id)

    matched = [event.message for event in events]
    assert all(isinstance(m, EventMessage) for m in matched)
    assert [m.fields.ActionID for m in matched] == [r.action_id for r in replies]
    channels = [getattr(m.fields, "Channel", "") for m in matched]
    assert channels[0].startswith("PJSIP/101-")
    assert channels[1].startswith("PJSIP/102-")
    assert channels[2] == "Fail/103"
    responses = [str(getattr(m.fields, "Response", "")) for m in matched]
    assert responses == ["Success", "Success", "Failure"]
    assert all(m.event == "OriginateResponse" and m.privilege == ["call", "all"] for m in matched)


async def test_the_cli_waits_for_the_originate_response_and_prints_it(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    broker = ["--amqp", amqp_url, "--exchange", rpc_exchange]
    broker += ["--events-exchange", amqp_names.exchange]
    headers = ["Channel=PJSIP/101", "Context=from-internal", "Exten=200", "Priority=1"]
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        pbx.originate_delay = 0.5
        enabled = {"rpc_enable": ["Originate"]}
        async with serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx, **enabled):
            answered, failed, not_async, not_originate = await asyncio.gather(
                action("pbx1", "Originate", *headers, "--wait", "--correlation", "c1", *broker),
                action("pbx1", "Originate", "Channel=Fail/9", "Exten=1", "--wait", *broker),
                action("pbx1", "Originate", *headers, "Async=false", "--wait", *broker),
                action("pbx1", "Ping", "--wait", *broker),
            )

    assert answered.code == 0, answered.err
    reply, event = (json.loads(line) for line in answered.out.splitlines())
    assert reply["ok"] is True
    assert re.fullmatch(r"amib-\d+/c1", reply["action_id"])
    assert event["event"] == "OriginateResponse"
    assert event["fields"]["ActionID"] == reply["action_id"]
    assert event["fields"]["Response"] == "Success"

    assert failed.code == 1, failed.err
    _, failure = (json.loads(line) for line in failed.out.splitlines())
    assert failure["fields"]["Response"] == "Failure"

    assert (not_async.code, not_async.out) == (2, "")
    assert "--wait needs an async Originate" in not_async.err
    assert (not_originate.code, not_originate.out) == (2, "")
    assert "--wait is for Originate" in not_originate.err
