"""State resync: the runner on its own, then a pipeline journalling a resync from a fake PBX."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.actions import ActionResult, AnswerHook
from bridge.ami.errors import ActionTimeout, AmiConnectionError, LocalProtocolError
from bridge.ami.protocol import Event, Header, HeaderInput, Message, Response
from bridge.publish.amqp import AmqpPublisher
from bridge.publish.records import Record, RecordKind, decode
from bridge.service.metrics import Metrics
from bridge.service.resync import (
    EntryOutcome,
    ResyncRunner,
    is_fully_booted,
    parse_resync_actions,
)
from bridge.service.server import ServerPipeline, Token
from bridge.settings import load_settings
from tests.ami.fake_server import FakeAmiServer, Handler, ServerConnection, reply
from tests.events.wire import parse_event

# -- the runner, with a scripted session and a recording sink --------------------------


def answer(ok: bool, *items: str, message: str = "") -> ActionResult:
    status = "Success" if ok else "Error"
    response = Response([("Response", status), ("Message", message or status)])
    events = [Event([("Event", name), ("ActionID", "amib-1")]) for name in items]
    return ActionResult(response, events, Event([("Event", "Done")]) if ok else None)


UNKNOWN = answer(False, message="Invalid/unknown command: SIPpeers.")


def commands(*names: str) -> ActionResult:
    """A ``ListCommands`` answer as manager.c writes it: one header per action."""
    listed = [(name, "Synopsis. (Priv: system,reporting)") for name in names]
    return ActionResult(Response([("Response", "Success"), ("ActionID", "amib-1"), *listed]))


class ScriptedSession:
    """``send_action`` answering from a script: a result, an exception, or a gate to wait on.

    Unless the script says otherwise, ``ListCommands`` fails, so every action is tried, and
    is counted in ``asked_for_commands`` rather than in ``sent``.
    """

    def __init__(self, script: Mapping[str, ActionResult | BaseException | asyncio.Event]) -> None:
        self.script = script
        self.sent: list[str] = []
        self.asked_for_commands = 0
        self.called = asyncio.Event()

    async def send_action(self, action: str, *, on_answer: AnswerHook) -> ActionResult:
        if action == "ListCommands" and action not in self.script:
            self.asked_for_commands += 1
            return answer(False, message="Invalid/unknown command: ListCommands.")
        self.sent.append(action)
        self.called.set()
        outcome = self.script[action]
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
            raise AssertionError("the gate is never opened")
        if isinstance(outcome, BaseException):
            raise outcome
        on_answer(outcome)  # as the reader does, before the sender resumes
        return outcome


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def journal_snapshot(self, events: list[Event]) -> None:
        self.calls.append(("snapshot", *(event.name for event in events)))


async def run(
    entries: list[str], script: dict[str, Any]
) -> tuple[list[EntryOutcome], ScriptedSession, RecordingSink]:
    session, sink = ScriptedSession(script), RecordingSink()
    runner = ResyncRunner("pbx1", parse_resync_actions(entries))
    outcomes = await runner.run(session.send_action, sink)
    return outcomes, session, sink


def test_the_plan_splits_alternatives_and_drops_blanks() -> None:
    assert parse_resync_actions(
        ["CoreShowChannels", " PJSIPShowEndpoints | SIPpeers|", "", " | "]
    ) == (("CoreShowChannels",), ("PJSIPShowEndpoints", "SIPpeers"))
    runner = ResyncRunner("pbx1", parse_resync_actions(["A", "B |C"]))
    assert runner.entries == ["A", "B|C"]


@pytest.mark.parametrize(
    ("text", "booted"),
    [
        ("Event: FullyBooted\nPrivilege: system,all\nStatus: Fully Booted", True),
        ("event: fullybooted\nPrivilege: system,all", True),
        ("Event: FullyBooted", True),
        ("Event: FullyBootedLater\nPrivilege: system,all", False),
        ("Event: Fully\nStatus: Booted", False),
        ("Event: Newchannel\nPrivilege: call,all", False),
    ],
)
def test_fully_booted_is_recognised_from_the_first_bytes(text: str, booted: bool) -> None:
    assert is_fully_booted(parse_event(text)) is booted


async def test_entries_run_in_order_and_each_answer_is_journalled() -> None:
    outcomes, session, sink = await run(
        ["CoreShowChannels", "DeviceStateList"],
        {
            "CoreShowChannels": answer(True, "CoreShowChannel", "CoreShowChannel"),
            "DeviceStateList": answer(True, "DeviceStateChange"),
        },
    )
    assert session.sent == ["CoreShowChannels", "DeviceStateList"]
    assert sink.calls == [
        ("snapshot", "CoreShowChannel", "CoreShowChannel"),
        ("snapshot", "DeviceStateChange"),
    ]
    assert outcomes == [
        EntryOutcome("CoreShowChannels", "CoreShowChannels", 2),
        EntryOutcome("DeviceStateList", "DeviceStateList", 1),
    ]


async def test_the_first_alternative_that_succeeds_is_used_and_no_later_one_is_tried() -> None:
    outcomes, session, sink = await run(
        ["PJSIPShowEndpoints|SIPpeers|IAXpeerlist"],
        {"PJSIPShowEndpoints": UNKNOWN, "SIPpeers": answer(True, "PeerEntry")},
    )
    assert session.sent == ["PJSIPShowEndpoints", "SIPpeers"]
    assert sink.calls == [("snapshot", "PeerEntry")]  # an error answer journals nothing
    assert outcomes == [EntryOutcome("PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "SIPpeers", 1)]


async def test_a_timeout_or_an_unsendable_name_moves_on_to_the_next_alternative() -> None:
    outcomes, session, _ = await run(
        ["Slow|Bad|QueueStatus"],
        {
            "Slow": ActionTimeout("no response to Slow within 10 s"),
            "Bad": LocalProtocolError("header value holds CR or LF"),
            "QueueStatus": answer(True),
        },
    )
    assert session.sent == ["Slow", "Bad", "QueueStatus"]
    assert outcomes == [EntryOutcome("Slow|Bad|QueueStatus", "QueueStatus", 0)]


async def test_a_failing_entry_is_skipped_and_logged_once_across_resyncs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = ResyncRunner("pbx1", parse_resync_actions(["SIPpeers|IAXpeerlist", "Fallback|Works"]))
    script = {
        "SIPpeers": UNKNOWN,
        "IAXpeerlist": answer(False, message="Invalid/unknown command: IAXpeerlist."),
        "Fallback": UNKNOWN,
        "Works": answer(True, "Item"),
    }
    with caplog.at_level(logging.DEBUG, logger="bridge.service.resync"):
        for _ in range(3):  # three logins
            session = ScriptedSession(script)
            outcomes = await runner.run(session.send_action, RecordingSink())
            assert session.sent == ["SIPpeers", "IAXpeerlist", "Fallback", "Works"]
    assert outcomes == [
        EntryOutcome("SIPpeers|IAXpeerlist", None, 0),
        EntryOutcome("Fallback|Works", "Works", 1),
    ]
    above_debug = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno > 10]
    assert above_debug == [
        (
            "WARNING",
            "pbx1: resync skips SIPpeers|IAXpeerlist, no action succeeded: "
            "SIPpeers: Invalid/unknown command: SIPpeers.; "
            "IAXpeerlist: Invalid/unknown command: IAXpeerlist.",
        ),
        (
            "INFO",
            "pbx1: resync uses Works for Fallback|Works "
            "(Fallback: Invalid/unknown command: SIPpeers.)",
        ),
    ]


async def test_actions_the_pbx_does_not_list_are_never_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Probing an absent action makes Asterisk raise a RequestBadFormat security event."""
    with caplog.at_level(logging.INFO, logger="bridge.service.resync"):
        outcomes, session, sink = await run(
            ["CoreShowChannels", "PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "QueueStatus"],
            {
                "ListCommands": commands("Ping", "coreshowchannels", "PJSIPShowEndpoints"),
                "CoreShowChannels": answer(True, "CoreShowChannel"),
                "PJSIPShowEndpoints": answer(True, "EndpointList", "EndpointList"),
            },
        )
    assert session.sent == ["ListCommands", "CoreShowChannels", "PJSIPShowEndpoints"]
    assert outcomes == [
        EntryOutcome("CoreShowChannels", "CoreShowChannels", 1),
        EntryOutcome("PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "PJSIPShowEndpoints", 2),
        EntryOutcome("QueueStatus", None, 0),
    ]
    assert sink.calls == [("snapshot", "CoreShowChannel"), ("snapshot", *["EndpointList"] * 2)]
    assert [r.getMessage() for r in caplog.records] == [
        "pbx1: resync skips QueueStatus, no action succeeded: QueueStatus: not offered by the PBX"
    ]


async def test_a_fallback_the_pbx_lists_is_used_without_probing_the_first() -> None:
    outcomes, session, _ = await run(
        ["PJSIPShowEndpoints|SIPpeers|IAXpeerlist"],
        {"ListCommands": commands("SIPpeers"), "SIPpeers": answer(True, "PeerEntry")},
    )
    assert session.sent == ["ListCommands", "SIPpeers"]
    assert outcomes == [EntryOutcome("PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "SIPpeers", 1)]


async def test_list_commands_is_asked_once_per_run_and_a_failure_tries_everything() -> None:
    runner = ResyncRunner("pbx1", parse_resync_actions(["A", "B|C"]))
    session = ScriptedSession({"A": answer(True), "B": UNKNOWN, "C": answer(True)})
    for _ in range(2):  # two logins
        await runner.run(session.send_action, RecordingSink())
    assert session.asked_for_commands == 2
    assert session.sent == ["A", "B", "C"] * 2
    timeout = ScriptedSession({"ListCommands": ActionTimeout("no response"), "A": answer(True)})
    await ResyncRunner("pbx1", [("A",)]).run(timeout.send_action, RecordingSink())
    assert timeout.sent == ["ListCommands", "A"]
    empty = ScriptedSession({})
    assert await ResyncRunner("pbx1", []).run(empty.send_action, RecordingSink()) == []
    assert empty.asked_for_commands == 0  # resync off: nothing is sent at all


async def test_against_the_simulator_only_what_it_lists_is_sent() -> None:
    from bridge.ami.simulator import AmiSimulator
    from tests.ami.test_simulator_lists import SECRET, logged_in

    sent: list[str] = []
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as sim, logged_in(sim) as conn:

        async def send(action: str, *, on_answer: AnswerHook) -> ActionResult:
            sent.append(action)
            return await conn.send_action(action, timeout=3, on_answer=on_answer)

        plan = parse_resync_actions(load_settings({}).resync_actions)
        outcomes = await ResyncRunner("pbx1", plan).run(send, RecordingSink())
    assert sent == [
        "ListCommands",
        "CoreShowChannels",
        "DeviceStateList",
        "ExtensionStateList",
        "QueueStatus",
        "PJSIPShowEndpoints",
    ]
    assert all(outcome.action is not None for outcome in outcomes)


async def test_a_lost_connection_ends_the_run() -> None:
    with pytest.raises(AmiConnectionError):
        await run(
            ["CoreShowChannels", "QueueStatus"],
            {"CoreShowChannels": AmiConnectionError("closed"), "QueueStatus": answer(True)},
        )
    session, sink = ScriptedSession({"A": AmiConnectionError("closed")}), RecordingSink()
    with pytest.raises(AmiConnectionError):
        await ResyncRunner("pbx1", [("A",), ("B",)]).run(session.send_action, sink)
    assert session.sent == ["A"]
    assert sink.calls == []


async def test_cancelling_the_run_journals_nothing() -> None:
    gate = asyncio.Event()
    session, sink = ScriptedSession({"CoreShowChannels": gate}), RecordingSink()
    task = asyncio.create_task(
        ResyncRunner("pbx1", [("CoreShowChannels",)]).run(session.send_action, sink)
    )
    await asyncio.wait_for(session.called.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.calls == []


# -- a pipeline against a scripted PBX on loopback ---------------------------------------


def list_answer(action: Message, item: str, bodies: Sequence[list[Header]]) -> list[HeaderInput]:
    """A list action's answer as Asterisk writes it: response, items, Complete event."""
    tag = [("ActionID", action.action_id or "")]
    done = [("EventList", "Complete"), ("ListItems", str(len(bodies)))]
    return [
        reply(action, "Success", ("EventList", "start"), ("Message", "will follow")),
        *([("Event", item), *tag, *body] for body in bodies),
        [("Event", f"{action.get('Action')}Complete"), *tag, *done],
    ]


def channel(n: int) -> list[Header]:
    return [("Channel", f"PJSIP/10{n}-0000000{n}"), ("ChannelState", "6"), ("Uniqueid", f"1.{n}")]


def live(name: str, n: int) -> list[Header]:
    return [("Event", name), ("Privilege", "call,all"), *channel(n)]


def pipeline_for(pbx: FakeAmiServer, tmp_path: Path, resync_actions: list[str]) -> ServerPipeline:
    """A pipeline reading ``pbx`` into its journal (no broker: nothing is published)."""
    settings = load_settings(
        {
            "ami": [f"pbx1=ami://bridge@127.0.0.1:{pbx.port}"],
            "ami_secret": "s3cret",
            "journal_dir": tmp_path,
            "resync_actions": resync_actions,
            "ami_reconnect_base": 0.05,
            "ami_reconnect_cap": 0.1,
        }
    )
    publisher: AmqpPublisher[Token] = AmqpPublisher("amqp://guest@127.0.0.1:9/")
    return ServerPipeline(settings.resolved_servers()[0], settings, publisher, Metrics())


@asynccontextmanager
async def pipeline_against(
    pbx: FakeAmiServer, tmp_path: Path, resync_actions: list[str]
) -> AsyncIterator[ServerPipeline]:
    """:func:`pipeline_for`, its session running for the block."""
    pipeline = pipeline_for(pbx, tmp_path, resync_actions)
    session = asyncio.create_task(pipeline.session.run())
    try:
        yield pipeline
    finally:
        await pipeline.session.stop(timeout=2)
        await asyncio.wait_for(session, 3)
        pipeline.journal.close()


class JournalReader:
    """Everything a pipeline journals, decoded, in journal order."""

    def __init__(self, pipeline: ServerPipeline) -> None:
        self.journal = pipeline.journal
        self.records: list[Record] = []

    async def until(self, done: Callable[[list[Record]], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while True:
                self.records += [decode(payload) for _, payload in self.journal.take(10_000)]
                if done(self.records):
                    return
                await asyncio.sleep(0.01)

    def described(self) -> list[tuple[str, ...]]:
        """Each record as (event name, "snapshot"?) or ("status", status[, phase])."""
        return [describe(record) for record in self.records]


def describe(record: Record) -> tuple[str, ...]:
    if record.kind is RecordKind.STATUS:
        status, fields = record.status()
        return ("status", status, fields["phase"]) if "phase" in fields else ("status", status)
    name = record.event().name
    return (name, "snapshot") if record.snapshot else (name,)


def resync_done(records: list[Record]) -> bool:
    return any(describe(r) == ("status", "resync", "done") for r in records)


def done_results(records: list[Record]) -> list[dict[str, Any]]:
    (fields,) = [r.status()[1] for r in records if describe(r) == ("status", "resync", "done")]
    results: list[dict[str, Any]] = fields["results"]
    return results


async def test_after_fully_booted_come_the_marker_the_snapshots_and_the_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def core_show_channels(conn: ServerConnection, action: Message) -> None:
        await conn.send(*list_answer(action, "CoreShowChannel", [channel(1), channel(2)]))

    async def sip_peers(conn: ServerConnection, action: Message) -> None:
        await conn.send(*list_answer(action, "PeerEntry", [[("ObjectName", "100")]]))

    handlers: dict[str, Handler] = {"coreshowchannels": core_show_channels, "sippeers": sip_peers}
    entries = ["CoreShowChannels", "PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "QueueStatus"]
    async with (
        FakeAmiServer(handlers=handlers) as pbx,
        pipeline_against(pbx, tmp_path, entries) as pipeline,
    ):
        journal = JournalReader(pipeline)
        with caplog.at_level(logging.INFO, logger="bridge.service.resync"):
            await journal.until(resync_done)
        sent = [a.get("Action") for a in pbx.latest.actions]
    assert journal.described() == [
        ("status", "connected"),
        ("FullyBooted",),
        ("status", "resync", "started"),
        ("CoreShowChannel", "snapshot"),
        ("CoreShowChannel", "snapshot"),
        ("PeerEntry", "snapshot"),
        ("status", "resync", "done"),
    ]
    records = journal.records
    assert {r.epoch for r in records} == {pipeline.session.epoch}
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert records[2].status() == ("resync", {"phase": "started", "actions": entries})
    assert [r.event().get("Uniqueid") for r in records[3:5]] == ["1.1", "1.2"]
    assert done_results(records) == [
        {"entry": "CoreShowChannels", "action": "CoreShowChannels", "items": 2},
        {"entry": "PJSIPShowEndpoints|SIPpeers|IAXpeerlist", "action": "SIPpeers", "items": 1},
        {"entry": "QueueStatus", "action": None, "items": 0},
    ]
    assert sent[2:] == [
        "ListCommands",  # this fake PBX does not answer it: every action is tried
        "CoreShowChannels",
        "PJSIPShowEndpoints",
        "SIPpeers",
        "QueueStatus",
    ]  # IAXpeerlist never: SIPpeers worked
    resync_lines = [r.levelname for r in caplog.records if r.name == "bridge.service.resync"]
    assert resync_lines == ["INFO", "WARNING"]


async def test_a_list_is_journalled_at_its_place_among_live_events(
    tmp_path: Path,
) -> None:
    async def core_show_channels(conn: ServerConnection, action: Message) -> None:
        # One write: a read delivers the whole list and the events around it together.
        answer = list_answer(action, "CoreShowChannel", [channel(1)])
        await conn.send(live("Newchannel", 2), *answer, live("Hangup", 1))

    async with (
        FakeAmiServer(handlers={"coreshowchannels": core_show_channels}) as pbx,
        pipeline_against(pbx, tmp_path, ["CoreShowChannels"]) as pipeline,
    ):
        journal = JournalReader(pipeline)
        await journal.until(resync_done)
    assert journal.described()[3:] == [
        ("Newchannel",),  # sent before the answer: journalled before it
        ("CoreShowChannel", "snapshot"),
        ("Hangup",),  # the snapshot's channel 1 hung up after it: never before it
        ("status", "resync", "done"),
    ]
    assert [r.seq for r in journal.records] == list(range(1, 8))


async def test_a_disconnect_cancels_the_resync_and_the_next_login_runs_a_new_one(
    tmp_path: Path,
) -> None:
    async def core_show_channels(conn: ServerConnection, action: Message) -> None:
        if len(pbx.connections) == 1:
            # No answer: an event, then the connection closes under the pending action.
            await conn.send(live("Newchannel", 1))
            conn.writer.close()
        else:
            await conn.send(*list_answer(action, "CoreShowChannel", [channel(1)]))

    async with (
        FakeAmiServer(handlers={"coreshowchannels": core_show_channels}) as pbx,
        pipeline_against(pbx, tmp_path, ["CoreShowChannels"]) as pipeline,
    ):
        journal = JournalReader(pipeline)
        await journal.until(resync_done)
    first, second = sorted({r.epoch for r in journal.records})
    assert journal.described() == [
        ("status", "connected"),
        ("FullyBooted",),
        ("status", "resync", "started"),
        ("Newchannel",),  # read while the action was pending: journalled as read
        ("status", "disconnected"),
        ("status", "gap"),
        ("status", "connected"),
        ("FullyBooted",),
        ("status", "resync", "started"),
        ("CoreShowChannel", "snapshot"),
        ("status", "resync", "done"),
    ]
    assert [r.epoch for r in journal.records] == [first] * 5 + [second] * 6
    assert [r.seq for r in journal.records] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6]
    assert done_results(journal.records) == [
        {"entry": "CoreShowChannels", "action": "CoreShowChannels", "items": 1}
    ]


async def test_stopping_the_session_cancels_a_pending_resync(tmp_path: Path) -> None:
    async def never_answer(conn: ServerConnection, action: Message) -> None:
        pass

    async with FakeAmiServer(handlers={"coreshowchannels": never_answer}) as pbx:
        pipeline = pipeline_for(pbx, tmp_path, ["CoreShowChannels"])
        session = asyncio.create_task(pipeline.session.run())
        journal = JournalReader(pipeline)
        await journal.until(
            lambda _: bool(pbx.connections and pbx.latest.actions_named("CoreShowChannels"))
        )
        await pipeline.session.stop(timeout=2)
        await asyncio.wait_for(session, 3)
        await asyncio.sleep(0)  # let the cancellation land
        resyncs = [t for t in asyncio.all_tasks() if t.get_name() == "resync-pbx1"]
        await journal.until(lambda records: describe(records[-1]) == ("status", "disconnected"))
        pipeline.journal.close()
    assert [t for t in resyncs if not t.done()] == []
    assert journal.described() == [
        ("status", "connected"),
        ("FullyBooted",),
        ("status", "resync", "started"),
        ("status", "disconnected"),
    ]


@pytest.mark.parametrize(
    ("entries", "after_login"),
    [([], None), (["CoreShowChannels"], [])],
    ids=["no resync actions", "no FullyBooted"],
)
async def test_no_resync_without_actions_or_without_fully_booted(
    tmp_path: Path, entries: list[str], after_login: list[HeaderInput] | None
) -> None:
    async with (
        FakeAmiServer(after_login=after_login) as pbx,
        pipeline_against(pbx, tmp_path, entries) as pipeline,
    ):
        journal = JournalReader(pipeline)
        await journal.until(lambda records: bool(records))
        await asyncio.sleep(0.2)  # a resync would have sent its action by now
        await journal.until(lambda _: True)
        sent = [a.get("Action") for a in pbx.latest.actions]
    assert sent == ["Challenge", "Login"]
    assert ("status", "resync", "started") not in journal.described()
