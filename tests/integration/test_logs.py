"""What an operator reads: a broker outage in a few lines, server ids, status, JSON logs.

The bridge runs as a process (the CLI's own logging) against the real broker behind a
:class:`~tests.support.tcp_proxy.TcpProxy`, with the actions consumer on, so both of its
broker connections see the outage.
"""

from __future__ import annotations

import json
import logging
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.publish.failover import LOUD_FAILURES
from bridge.publish.journal import Journal
from bridge.publish.records import encode_status
from bridge.service.app import BridgeApp
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    bridge_settings,
    broker_address,
    run_args,
    running_bridge,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames, delete_names
from tests.support.tcp_proxy import TcpProxy

ENV = {"AMI_BRIDGE_AMI_SECRET": SECRET}
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ([\w.]+): ")


@pytest.fixture
async def rpc_exchange(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[str]:
    names = AmqpNames(f"{amqp_names.exchange}.actions")
    yield names.exchange
    await delete_names(amqp_url, names)


def _records(log: str) -> list[tuple[str, str, str]]:
    """(level, logger, line) of each log line; a line that is not one fails the test."""
    records = []
    for line in log.splitlines():
        match = _LINE.match(line)
        assert match, f"not a log line (a traceback?): {line!r}"
        records.append((match[1], match[2], line))
    return records


async def test_a_broker_outage_is_a_few_lines_of_the_bridge_only(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=50, seed=4) as pbx,
    ):
        # Two servers on one host and port: only their ids tell their lines apart.
        port = pbx.port
        args = run_args(
            {"pbx1": port, "pbx2": port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            rpc_exchange=rpc_exchange,
            amqp_reconnect_base=0.05,
            amqp_reconnect_cap=0.2,
            log_level="DEBUG",  # the bridge's DEBUG lines; the libraries stay at WARNING
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            await wait_for(lambda: "taking action requests" in bridge.log(), 15, "actions")
            before = len(bridge.log().splitlines())
            await proxy.cut()
            await wait_for(
                lambda: bridge.log().count("publishing: broker") > 2 * LOUD_FAILURES,
                15,
                "more failed attempts than are logged as warnings",
            )
            proxy.heal()
            await wait_for(lambda: "broker connection restored" in bridge.log(), 15, "restored")
            await wait_for(
                lambda: bridge.log().count("taking action requests") == 2, 15, "actions again"
            )
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == 0
    records = _records(bridge.log())
    assert {logger.split(".")[0] for _, logger, _ in records} == {"bridge"}
    outage = [(level, line) for level, _, line in records[before:] if level != "DEBUG"]
    warnings = [line for level, line in outage if level == "WARNING"]
    # The connection lost, what happens meanwhile, and the first failed attempts: the
    # actions consumer's own attempts are DEBUG lines, the publisher reports the outage.
    assert 3 <= len(warnings) <= LOUD_FAILURES + 2, warnings
    assert not [line for line in warnings if "action requests" in line]
    assert any("reached after" in line and "failed attempts" in line for _, line in outage)
    for sid in ("pbx1", "pbx2"):
        logins = [line for _, _, line in records if f"{sid}: AMI logged in to ami://" in line]
        assert len(logins) == 1
        assert f"127.0.0.1:{port}" in logins[0]
    # A clean stop says so at INFO, and nothing after the stop began is a warning.
    stop = next(n for n, (_, _, line) in enumerate(records) if "shutting down" in line)
    assert [level for level, _, _ in records[stop:]] == ["INFO"] * len(records[stop:])
    assert "every journalled message is confirmed" in records[-1][2]


async def test_json_log_format_is_one_object_per_line(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=20, seed=2) as pbx:
        args = run_args(
            {"pbx1": pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            log_format="json",
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            await wait_for(lambda: "AMI logged in" in bridge.log(), 15, "the login")
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == 0
    lines = [json.loads(line) for line in bridge.log().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    (login,) = [line for line in lines if "AMI logged in" in line["message"]]
    assert login["server"] == "pbx1"
    assert login["level"] == "INFO"
    assert login["logger"] == "bridge.ami.session"


async def test_status_lines_and_the_inherited_backlog(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    journal = Journal.open(tmp_path / "journal" / "pbx1")
    journal.append([encode_status(1, n, 0.0, "connected", {}) for n in range(1, 4)])
    journal.close()
    async with AmiSimulator(port=0, secret=SECRET, rate=100, seed=3) as pbx:
        settings = bridge_settings(
            {"pbx1": pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            status_interval=0.5,
        )
        async with running_bridge(settings):
            await wait_for(
                lambda: len([r for r in caplog.records if "status:" in r.getMessage()]) >= 2,
                10,
                "two status lines",
            )
    messages = [r.getMessage() for r in caplog.records]
    (inherited,) = [m for m in messages if "journalled by the last run" in m]
    assert inherited.startswith("pbx1: 3 messages (")
    status = [m for m in messages if "status:" in m][-1]
    assert re.fullmatch(
        r"pbx1: status: AMI connected, [\d.]+ events/s read, [\d.]+ messages/s published; "
        r"journal \d+ messages \([\d.]+ k?B\), oldest [\d.]+ s; broker connected",
        status,
    ), status
    rate = float(status.split("AMI connected, ")[1].split(" ")[0])
    assert 50 < rate < 150  # the simulator sends 100 events/s


def test_no_inherited_backlog_no_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    settings = bridge_settings(
        {"pbx1": 1}, amqp="amqp://guest:guest@127.0.0.1:1/", exchange="x", journal_dir=tmp_path
    )
    app = BridgeApp(settings)
    for pipeline in app.pipelines:
        pipeline.journal.close()
    assert not [r for r in caplog.records if "last run" in r.getMessage()]
