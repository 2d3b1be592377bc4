"""Action requests without a broker: validation, the allow-list, and every reply's shape.

Replies are also checked against the committed ``schemas/rpc/*.json``, so the contract
and the code cannot drift apart.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bridge.ami.actions import ActionResult
from bridge.ami.errors import ActionTimeout, AmiConnectionError, LocalProtocolError
from bridge.ami.protocol import CommandOutput, Event, HeaderInput, Response
from bridge.events.rpc import (
    MAX_HEADERS,
    MAX_VALUE_BYTES,
    ActionReply,
    ErrorCode,
    headers_object,
)
from bridge.service.rpc import run_admitted
from bridge.service.rpc_requests import (
    MAX_BODY_BYTES,
    ActionPolicy,
    Admitted,
    admit,
    server_keys,
)
from bridge.settings import READ_ONLY_ACTIONS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SERVERS = server_keys(["pbx1", "Edge-2"])
POLICY = ActionPolicy(READ_ONLY_ACTIONS)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / "rpc" / name).read_text()))


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def refused(routing_key: str, raw: bytes, *, policy: ActionPolicy = POLICY) -> dict[str, Any]:
    """The error reply ``admit`` gives, as its JSON, checked against the reply schema."""
    outcome = admit(routing_key, raw, servers=SERVERS, policy=policy)
    assert isinstance(outcome, ActionReply), outcome
    document: dict[str, Any] = orjson.loads(outcome.to_json())
    assert validator("reply.json").is_valid(document), document
    assert document["ok"] is False
    return document


def admitted(routing_key: str, raw: bytes, *, policy: ActionPolicy = POLICY) -> Admitted:
    outcome = admit(routing_key, raw, servers=SERVERS, policy=policy)
    assert isinstance(outcome, Admitted), outcome
    return outcome


# -- admitting requests ----------------------------------------------------------------------


def test_a_request_names_its_action_in_the_body_the_key_or_both() -> None:
    queue_status = {"action": "QueueStatus", "headers": {"Queue": "support"}}
    assert admitted("pbx1", body(queue_status)) == Admitted(
        "pbx1", "QueueStatus", (("Queue", "support"),)
    )
    assert admitted("pbx1.queuestatus", body(queue_status)).action == "QueueStatus"
    # The key alone is enough; the PBX gets the allow-list's spelling.
    assert admitted("pbx1.queuestatus", b"{}").action == "QueueStatus"
    assert admitted("pbx1.PING", body({"headers": {}})).action == "Ping"


def test_the_server_segment_is_the_lower_cased_server_id() -> None:
    assert admitted("edge-2.ping", b"{}").server == "Edge-2"
    assert admitted("EDGE-2.ping", b"{}").server == "Edge-2"


def test_repeated_keys_become_repeated_headers_in_order() -> None:
    request = {"action": "Getvar", "headers": {"Variable": ["a", "b"], "Channel": "PJSIP/1"}}
    assert admitted("pbx1", body(request)).headers == (
        ("Variable", "a"),
        ("Variable", "b"),
        ("Channel", "PJSIP/1"),
    )


def test_an_unknown_server_is_refused_with_its_name() -> None:
    reply = refused("pbx9.ping", b"{}")
    assert reply["error"]["code"] == ErrorCode.UNKNOWN_SERVER
    assert reply["server"] == "pbx9"
    assert "'pbx9'" in reply["error"]["message"]


def test_an_unknown_server_reply_names_the_action_as_the_body_spells_it() -> None:
    # Like every other reply: the body's spelling, not the lower-cased key segment.
    assert refused("pbx9.ping", body({"action": "Ping"}))["action"] == "Ping"
    assert refused("pbx9", body({"action": "QueueStatus"}))["action"] == "QueueStatus"
    # Without a readable body, the key's segment is all there is.
    assert refused("pbx9.ping", b"{not json")["action"] == "ping"


@pytest.mark.parametrize("key", ["pbx1.ping.now", "pbx1.", ".ping", ""])
def test_a_routing_key_of_another_shape_is_malformed(key: str) -> None:
    reply = refused(key, body({"action": "Ping"}))
    assert reply["error"]["code"] == ErrorCode.MALFORMED_REQUEST
    assert "{server}.{action}" in reply["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "Invalid JSON"),
        (b"[1, 2]", "object"),
        (b"{}", "no action"),
        (body({"action": "Que ueStatus"}), "action: must be an AMI action name"),
        (body({"action": "Ping", "headers": {"Queue": 5}}), "headers.Queue: must be a string"),
        (body({"action": "Ping", "headers": {"Queue": ["a", None]}}), "headers.Queue"),
        (body({"action": "Ping", "headers": {"Queue": None}}), "headers.Queue"),
        (body({"action": "Ping", "headers": ["Queue"]}), "headers"),
        (body({"action": "Ping", "header": {}}), "header: Extra inputs are not permitted"),
        (body({"action": "Ping", "headers": {"ActionID": "x"}}), "'ActionID' is set by the"),
        (body({"action": "Ping", "headers": {"action": "Hangup"}}), "'action' is set by the"),
        (body({"action": "Ping", "headers": {"A": "1\r\nAction: Hangup"}}), "CR or LF"),
        (body({"action": "Ping", "headers": {"A": ["ok", "x\ny"]}}), "CR or LF"),
        (body({"action": "Ping", "headers": {"Bad\rKey": "x"}}), "illegal AMI header name"),
        (body({"action": "Ping", "headers": {"Bad: Key": "x"}}), "illegal AMI header name"),
        (body({"action": "Ping", "headers": {"": "x"}}), "illegal AMI header name"),
        (body({"action": "Ping", "headers": {"K" * 65: "x"}}), "over 64 bytes"),
        (body({"action": "Ping", "headers": {"V": "é" * 501}}), "over 1000 bytes"),
        (
            body({"action": "Ping", "headers": {f"H{i}": "x" for i in range(MAX_HEADERS + 1)}}),
            "65 header lines",
        ),
        (body({"action": "Ping", "headers": {"H": ["x"] * (MAX_HEADERS + 1)}}), "65 header lines"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(raw: bytes, why: str) -> None:
    reply = refused("pbx1", raw)
    assert reply["error"]["code"] == ErrorCode.MALFORMED_REQUEST
    assert why in reply["error"]["message"]


def test_the_limits_themselves_are_accepted() -> None:
    value = "é" * (MAX_VALUE_BYTES // 2)
    request = {"action": "Ping", "headers": {f"H{i}": value for i in range(MAX_HEADERS)}}
    assert len(admitted("pbx1", body(request)).headers) == MAX_HEADERS


def test_an_oversized_body_is_refused_before_it_is_parsed() -> None:
    reply = refused("pbx1.ping", b" " * (MAX_BODY_BYTES + 1))
    assert reply["error"]["code"] == ErrorCode.MALFORMED_REQUEST
    assert "bytes" in reply["error"]["message"]


def test_the_error_text_never_holds_a_header_value() -> None:
    secret = "s3cret-value"
    for headers in [
        {"Secret": secret + "\r\n"},
        {"Secret": secret * 100},
        {"Secret": [secret, 7]},
        {"ActionID": secret},
    ]:
        reply = refused("pbx1", body({"action": "Ping", "headers": headers}))
        assert secret not in json.dumps(reply)


def test_key_and_body_must_name_the_same_action() -> None:
    reply = refused("pbx1.ping", body({"action": "Hangup"}))
    assert reply["error"]["code"] == ErrorCode.MALFORMED_REQUEST
    assert "'ping'" in reply["error"]["message"]
    assert "'Hangup'" in reply["error"]["message"]


# -- the allow-list ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["Originate", "Command", "Redirect", "Hangup", "Setvar"])
def test_actions_that_change_state_are_refused_by_default(action: str) -> None:
    reply = refused("pbx1", body({"action": action}))
    assert reply["error"]["code"] == ErrorCode.NOT_ALLOWED
    assert reply["action"] == action
    assert "rpc_enable" in reply["error"]["message"]


def test_an_action_enabled_explicitly_is_allowed_in_any_case() -> None:
    policy = ActionPolicy(READ_ONLY_ACTIONS, ["Originate"])
    assert admitted("pbx1", body({"action": "ORIGINATE"}), policy=policy).action == "Originate"
    assert admitted("pbx1.originate", b"{}", policy=policy).action == "Originate"
    assert refused("pbx1", body({"action": "Hangup"}), policy=policy)["error"]["code"] == (
        ErrorCode.NOT_ALLOWED
    )


def test_the_allow_list_compares_without_case() -> None:
    policy = ActionPolicy(["coreshowchannels"])
    assert policy.maybe_allowed("CoreShowChannels") == "coreshowchannels"
    assert policy.maybe_allowed("Ping") is None


@pytest.mark.parametrize("action", ["Logoff", "Events", "Filter", "Login", "WaitEvent"])
def test_actions_on_the_bridge_s_own_session_are_refused_even_when_enabled(action: str) -> None:
    policy = ActionPolicy(READ_ONLY_ACTIONS, [action])
    reply = refused("pbx1", body({"action": action}), policy=policy)
    assert reply["error"]["code"] == ErrorCode.NOT_ALLOWED
    assert "own AMI session" in reply["error"]["message"]


def test_every_default_action_is_read_only() -> None:
    changing = {"originate", "command", "redirect", "hangup", "setvar", "atxfer", "park"}
    assert not changing & {name.lower() for name in READ_ONLY_ACTIONS}


# -- replies ----------------------------------------------------------------------------------


def test_a_list_action_s_reply_carries_every_item_and_the_closing_event() -> None:
    response = Response(
        [("Response", "Success"), ("ActionID", "amib-3"), ("EventList", "start"), ("Message", "x")]
    )
    items = [
        Event([("Event", "CoreShowChannel"), ("ActionID", "amib-3"), ("Channel", f"PJSIP/{i}")])
        for i in range(3)
    ]
    complete = Event(
        [("Event", "CoreShowChannelsComplete"), ("ActionID", "amib-3"), ("ListItems", "3")]
    )
    reply = ActionReply.from_result(
        "pbx1", "CoreShowChannels", ActionResult(response, items, complete)
    )
    document = orjson.loads(reply.to_json())

    assert validator("reply.json").is_valid(document)
    assert document["ok"] is True
    assert document["response"] == {"Response": "Success", "EventList": "start", "Message": "x"}
    assert [e["Channel"] for e in document["events"]] == ["PJSIP/0", "PJSIP/1", "PJSIP/2"]
    assert document["complete"] == {"Event": "CoreShowChannelsComplete", "ListItems": "3"}
    assert "error" not in document
    assert "output" not in document


def test_an_error_response_is_an_action_failed_reply_with_the_pbx_message() -> None:
    response = Response([("Response", "Error"), ("Message", "No such channel")])
    document = orjson.loads(
        ActionReply.from_result("pbx1", "Status", ActionResult(response)).to_json()
    )

    assert validator("reply.json").is_valid(document)
    assert document["ok"] is False
    assert document["error"] == {"code": "action_failed", "message": "No such channel"}
    assert document["response"]["Message"] == "No such channel"


def test_legacy_command_output_is_kept_as_text() -> None:
    response = CommandOutput([("Response", "Follows")], output="line 1\nline 2")
    reply = ActionReply.from_result("pbx1", "Command", ActionResult(response))
    assert reply.ok
    assert reply.output == "line 1\nline 2"


def test_headers_object_groups_repeated_keys_under_their_first_spelling() -> None:
    message = Event(
        [("Event", "X"), ("Output", "a"), ("output", "b"), ("OUTPUT", "c"), ("ActionID", "1")]
    )
    assert headers_object(message) == {"Event": "X", "Output": ["a", "b", "c"]}


def test_headers_object_replaces_bytes_that_were_not_utf8() -> None:
    message = Event([("Event", "X"), ("Name", "caf\udce9")], invalid_utf8=True)
    assert headers_object(message) == {"Event": "X", "Name": "caf\ufffd"}


def test_the_request_schema_accepts_good_requests_and_rejects_bad_ones() -> None:
    schema = validator("request.json")
    assert schema.is_valid({"action": "Originate", "headers": {"Variable": ["a=1", "b=2"]}})
    assert schema.is_valid({})
    assert not schema.is_valid({"action": "Bad name"})
    assert not schema.is_valid({"headers": {"Queue": 1}})
    assert not schema.is_valid({"action": "Ping", "extra": 1})


# -- running an admitted request --------------------------------------------------------------


class ScriptedRunner:
    """Answers ``send_action`` with a result or raises, recording what it was sent."""

    def __init__(self, outcome: ActionResult | BaseException) -> None:
        self.outcome = outcome
        self.sent: list[tuple[str, list[tuple[str, str]], float | None]] = []
        self.tags: list[str | None] = []

    async def send_action(
        self,
        action: str,
        headers: HeaderInput = (),
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        action_tag: str | None = None,
    ) -> ActionResult:
        self.sent.append((action, list(headers), timeout))  # type: ignore[arg-type]
        self.tags.append(action_tag)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


REQUEST = Admitted("pbx1", "QueueStatus", (("Queue", "support"),))


async def test_the_action_goes_to_the_session_with_its_headers_and_the_timeout() -> None:
    runner = ScriptedRunner(ActionResult(Response([("Response", "Success")])))
    reply = await run_admitted(REQUEST, runner, 2.5)

    assert runner.sent == [("QueueStatus", [("Queue", "support")], 2.5)]
    assert reply.ok
    assert (reply.server, reply.action, reply.events) == ("pbx1", "QueueStatus", [])


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        (ActionTimeout("late"), ErrorCode.TIMEOUT, "within 2.5 s"),
        (
            AmiConnectionError("not connected to ami://b@h:5038"),
            ErrorCode.NOT_CONNECTED,
            "not connected",
        ),
        (LocalProtocolError("illegal AMI header name 'x'"), ErrorCode.MALFORMED_REQUEST, "illegal"),
        (RuntimeError("bug"), ErrorCode.INTERNAL_ERROR, "see its log"),
    ],
)
async def test_every_failure_becomes_an_error_reply(
    failure: BaseException, code: ErrorCode, text: str
) -> None:
    reply = await run_admitted(REQUEST, ScriptedRunner(failure), 2.5)
    document = orjson.loads(reply.to_json())

    assert validator("reply.json").is_valid(document)
    assert document["error"]["code"] == code
    assert text in document["error"]["message"]
    assert (document["server"], document["action"]) == ("pbx1", "QueueStatus")
