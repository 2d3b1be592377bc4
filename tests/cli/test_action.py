"""``ami-bridge action``: argument handling in-process, and real runs as a child process.

The child processes (``python -m bridge action ...``) talk to an in-process bridge on the
real broker, which serves an in-process simulator; they run on asyncio's subprocess API
so the bridge keeps serving while the test waits.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.cli.action import NO_REPLY, parse_headers, print_reply
from bridge.cli.main import main
from bridge.events.rpc import ActionReply, ErrorCode
from bridge.settings import ENV_PREFIX
from tests.integration.harness import SECRET, bridge_settings, running_bridge
from tests.support import AmqpNames, delete_names

#: A broker address where nothing listens: a usage error must be found before connecting.
NOWHERE = "amqp://guest:guest@127.0.0.1:1/"


# -- in-process ---------------------------------------------------------------------------


def test_headers_repeat_keys_in_order_and_keep_everything_after_the_first_equals() -> None:
    assert parse_headers(["Queue=support", "Variable=a=1", "Variable=b=2", "Variable=c"]) == {
        "Queue": "support",
        "Variable": ["a=1", "b=2", "c"],
    }
    assert parse_headers(["Empty="]) == {"Empty": ""}
    assert parse_headers([]) == {}


@pytest.mark.parametrize("item", ["Queue", "=value"])
def test_a_header_that_is_not_key_value_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_headers([item])


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["pbx1", "Ping", "Queue"], "is not KEY=VALUE"),
        (["pbx.1", "Ping"], "invalid server id"),
        (["pbx1", "Ping", "Queue=a\r\nAction: Logoff"], "CR or LF"),
        (["pbx1", "Ping", "ActionID=7"], "set by the bridge"),
        (["pbx1", "Not an action"], "AMI action name"),
        (["pbx1", "Ping", "--timeout", "0"], "--timeout"),
        (["pbx1", "Ping", "--exchange", ""], "rpc_exchange is empty"),
    ],
)
def test_usage_errors_exit_2_before_connecting(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["action", *argv, "--amqp", NOWHERE]) == 2
    captured = capsys.readouterr()
    assert why in captured.err
    assert captured.out == ""


def test_an_unreachable_broker_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["action", "pbx1", "Ping", "--amqp", NOWHERE, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "unavailable" in err
    assert "guest:guest" not in err  # the password is masked
    assert len(err.strip().splitlines()) == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_reply_is_indented_on_a_terminal_and_one_line_otherwise() -> None:
    reply = ActionReply.failure(ErrorCode.NOT_ALLOWED, "no", server="pbx1", action="Hangup")
    terminal, pipe = Terminal(), io.StringIO()
    print_reply(reply, terminal)
    print_reply(reply, pipe)

    assert json.loads(terminal.getvalue()) == json.loads(pipe.getvalue())
    assert terminal.getvalue().count("\n") > 3
    assert pipe.getvalue().count("\n") == 1


# -- as a child process -------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def reply(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.out)
        return document


async def action(*args: str, within: float = 20.0) -> Outcome:
    """Run ``python -m bridge action <args>`` to the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "action",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Outcome(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def rpc_exchange(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[str]:
    names = AmqpNames(f"{amqp_names.exchange}.actions")
    yield names.exchange
    await delete_names(amqp_url, names)


async def test_the_cli_runs_actions_through_a_running_bridge(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    broker = ["--amqp", amqp_url, "--exchange", rpc_exchange]
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        settings = bridge_settings(
            {"pbx1": pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            rpc_exchange=rpc_exchange,
        )
        async with running_bridge(settings) as app:
            assert app.rpc is not None
            await pbx.wait_for_sessions(1, 10)
            async with asyncio.timeout(10):
                await app.rpc.ready.wait()
            ping, refused = await asyncio.gather(
                action("pbx1", "Ping", *broker),
                action("pbx1", "Originate", "Channel=PJSIP/101", "Variable=a=1", *broker),
            )
            pbx.answer_pings = False
            silent = await action("pbx1", "Ping", "--timeout", "0.5", *broker)

    assert ping.code == 0, ping.err
    assert ping.out.count("\n") == 1  # not a terminal: one line
    assert ping.reply()["ok"] is True
    assert ping.reply()["response"]["Ping"] == "Pong"

    assert refused.code == 1
    assert refused.reply()["error"] == {
        "code": "not_allowed",
        "message": "Originate is not allowed over the bus; the operator can allow it with "
        "the rpc_enable setting",
    }

    assert silent.code == NO_REPLY
    assert silent.out == ""
    assert "no reply from the bridge within 0.5 s" in silent.err


async def test_the_cli_fails_fast_when_no_bridge_takes_requests(
    amqp_url: str, rpc_exchange: str
) -> None:
    outcome = await action("pbx1", "Ping", "--amqp", amqp_url, "--exchange", rpc_exchange)

    assert outcome.code == 1
    assert outcome.out == ""
    assert f"exchange {rpc_exchange!r} does not exist" in outcome.err
