"""ActionID routing without a socket: responses, list actions and failures."""

from __future__ import annotations

import asyncio

import pytest

from bridge.ami.actions import ActionResult, PendingActions
from bridge.ami.errors import AmiConnectionError
from bridge.ami.protocol import Event, Response


def response(action_id: str, status: str = "Success", *extra: tuple[str, str]) -> Response:
    return Response([("Response", status), ("ActionID", action_id), *extra])


def event(name: str, action_id: str, *extra: tuple[str, str]) -> Event:
    return Event([("Event", name), ("ActionID", action_id), *extra])


async def test_ids_are_fresh_and_a_response_answers_its_action() -> None:
    actions = PendingActions()
    first, second = actions.new_id(), actions.new_id()
    assert (first, second) == ("amib-1", "amib-2")
    answer = actions.expect(second)
    assert not actions.route_response(response(first))  # nobody waits for amib-1
    assert actions.route_response(response(second, "Success", ("Ping", "Pong")))
    result = await asyncio.wait_for(answer, 1)
    assert result == ActionResult(response(second, "Success", ("Ping", "Pong")))
    assert result.ok


async def test_a_list_action_collects_its_events_until_complete() -> None:
    actions = PendingActions()
    answer = actions.expect("q")
    start = response("q", "Success", ("EventList", "start"))
    assert actions.route_response(start)
    assert not actions.route_response(start)  # a second response for the list is stray
    items = [event("QueueMember", "q", ("Name", str(i))) for i in range(3)]
    assert all(actions.route_event(item) for item in items)
    assert not actions.route_event(event("Newchannel", "other"))
    assert not answer.done()
    complete = event("QueueStatusComplete", "q", ("EventList", "Complete"))
    assert actions.route_event(complete)
    assert await asyncio.wait_for(answer, 1) == ActionResult(start, items, complete)


async def test_an_error_to_a_list_action_answers_it_at_once() -> None:
    actions = PendingActions()
    answer = actions.expect("q")
    refused = response("q", "Error", ("EventList", "start"), ("Message", "Permission denied"))
    assert actions.route_response(refused)
    result = await asyncio.wait_for(answer, 1)
    assert not result.ok
    assert result.events == []
    # Events with the ID no longer belong to a list action: they are stream events.
    assert not actions.route_event(event("QueueMember", "q"))


async def test_fail_all_fails_every_waiting_action_and_forget_drops_one() -> None:
    actions = PendingActions()
    answered, waiting = actions.expect("a"), actions.expect("b")
    actions.route_response(response("a"))
    actions.fail_all(AmiConnectionError("peer closed the connection"))
    assert (await answered).ok
    with pytest.raises(AmiConnectionError, match="peer closed the connection"):
        await waiting
    actions.forget("b")
    assert not actions.route_response(response("b"))


async def test_an_answer_hook_runs_after_a_flush_and_before_the_future_resolves() -> None:
    calls: list[str] = []
    actions = PendingActions(flush=lambda: calls.append("flush"))
    plain = actions.expect("p")  # no hook: answered without a flush
    assert actions.route_response(response("p"))
    assert calls == []

    def hook(result: ActionResult) -> None:
        assert not answer.done()  # the reader records it before the sender resumes
        calls.append(f"hook:{len(result.events)}")

    answer = actions.expect("q", on_answer=hook)
    assert actions.route_response(response("q", "Success", ("EventList", "start")))
    assert actions.route_event(event("Item", "q"))
    assert calls == []  # nothing until the list is complete
    assert actions.route_event(event("ItemsComplete", "q", ("EventList", "Complete")))
    assert calls == ["flush", "hook:1"]
    assert (await answer).complete is not None
    assert (await plain).ok
