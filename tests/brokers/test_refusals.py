"""A broker that refuses the bridge: one clear line, exit code 2 at start, backoff later.

Each test has its own user and virtual host on a private node (``rabbit_node``), so
permissions can be given and taken away without touching any other broker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import Path

import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.cli.exit_codes import ExitCode
from tests.ami.fake_server import FakeAmiServer
from tests.brokers.access import account, cpu_seconds
from tests.integration.contract import first_occurrences
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    Consumer,
    bridge_settings,
    broker_address,
    run_args,
    running_bridge,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.rabbit_nodes import RabbitNode
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"
ENV = {"AMI_BRIDGE_AMI_SECRET": SECRET}
EXCHANGE = "ami.events"


def one_line_each(log: str, pattern: str) -> list[str]:
    """The lines of ``log`` matching ``pattern``; the log holds no traceback."""
    assert "Traceback" not in log, log
    return [line for line in log.splitlines() if re.search(pattern, line)]


async def test_no_permission_to_declare_at_start_exits_2_with_the_brokers_reason(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    async with (
        account(rabbit_node, configure="^$", write="^$", read="^$") as user,
        FakeAmiServer(users={"bridge": SECRET}) as pbx,
    ):
        args = run_args(
            {SERVER: pbx.port}, amqp=user.url, exchange=EXCHANGE, journal_dir=tmp_path / "j"
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            assert await bridge.wait(30) == ExitCode.CONFIG_ERROR
        assert pbx.connections == []  # nothing is read from AMI without a broker
    lines = one_line_each(bridge.log(), "ACCESS_REFUSED")
    assert len(lines) == 1, lines
    assert f"broker 127.0.0.1:{rabbit_node.port} refused declaring exchange" in lines[0]
    assert f"refused for user '{user.user}'" in lines[0]
    assert "exiting (amqp_on_auth_failure=exit)" in lines[0]
    assert user.password not in bridge.log()


async def test_a_wrong_vhost_names_the_vhost_and_the_brokers_reason(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    async with (
        account(rabbit_node) as user,
        FakeAmiServer(users={"bridge": SECRET}) as pbx,
    ):
        wrong = user.url.replace(user.vhost, "no-such-vhost")
        args = run_args(
            {SERVER: pbx.port}, amqp=wrong, exchange=EXCHANGE, journal_dir=tmp_path / "j"
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            assert await bridge.wait(30) == ExitCode.CONFIG_ERROR
    lines = one_line_each(bridge.log(), "no-such-vhost")
    assert len(lines) == 1, lines
    assert "refused the virtual host 'no-such-vhost'" in lines[0]
    assert "NOT_ALLOWED" in lines[0]  # the broker's own words


async def test_a_refusal_at_start_is_retried_with_backoff_when_the_setting_says(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    async with (
        account(rabbit_node, configure="^$", write="^$", read="^$") as user,
        AmiSimulator(port=0, secret=SECRET, rate=20, seed=4) as pbx,
    ):
        args = run_args(
            {SERVER: pbx.port},
            amqp=user.url,
            exchange=EXCHANGE,
            journal_dir=tmp_path / "j",
            amqp_on_auth_failure="retry",
            amqp_reconnect_base=0.2,
            amqp_reconnect_cap=1.0,
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            await wait_for(
                lambda: len(one_line_each(bridge.log(), "ACCESS_REFUSED")) >= 2, 20, "2 retries"
            )
            await user.set_permissions(".*", ".*", ".*")
            await wait_for(lambda: pbx.sessions == 1, 20, "the AMI login once allowed")
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(20) == 0
    assert all("retrying in" in line for line in one_line_each(bridge.log(), "ACCESS_REFUSED"))


async def test_publishing_refused_backs_off_without_spinning(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    """The user may declare the topology but not publish: a 20 s run costs a few
    connections and little CPU, with one line per attempt."""
    unrouted = re.escape(f"{EXCHANGE}.unrouted")
    async with (
        account(rabbit_node, write=f"^{unrouted}$") as user,
        TcpProxy(*broker_address(rabbit_node.url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=100, seed=5) as pbx,
    ):
        args = run_args(
            {SERVER: pbx.port},
            amqp=via_proxy(user.url, proxy),
            exchange=EXCHANGE,
            journal_dir=tmp_path / "j",
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            await wait_for(lambda: pbx.sessions == 1, 20, "the AMI login")
            await wait_for(
                lambda: len(one_line_each(bridge.log(), "ACCESS_REFUSED")) >= 1, 10, "a refusal"
            )
            accepted, cpu = proxy.accepted, cpu_seconds(bridge.process.pid)
            await asyncio.sleep(20.0)
            connections = proxy.accepted - accepted
            cpu_share = (cpu_seconds(bridge.process.pid) - cpu) / 20.0
            assert bridge.running
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(20) == 0
    # With the 5 s cap a round waits 2.5 s on average: about 8 attempts in 20 s.
    print(f"publish refused for 20 s: {connections} connections, {cpu_share:.1%} of a core")
    assert 2 <= connections <= 20, connections
    assert cpu_share < 0.25, f"{cpu_share:.0%} of a core"
    lines = one_line_each(bridge.log(), "ACCESS_REFUSED")
    assert len(lines) <= 2 * connections + 2, len(lines)
    assert any(f"access to exchange '{EXCHANGE}'" in line for line in lines)


async def test_permission_revoked_mid_run_is_retried_and_nothing_is_lost(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    names = AmqpNames("ami.events")
    async with (
        account(rabbit_node) as user,
        AmiSimulator(port=0, secret=SECRET, rate=200, duration=8.0, seed=6) as pbx,
        Consumer.bound(user.url, names.exchange, names.queue) as consumer,
    ):
        args = run_args(
            {SERVER: pbx.port},
            amqp=user.url,
            exchange=names.exchange,
            journal_dir=tmp_path / "j",
            amqp_reconnect_cap=1.0,
        )
        async with BridgeProcess(args, tmp_path / "bridge.log", ENV) as bridge:
            await wait_for(lambda: len(consumer.bodies) > 100, 20, "events flowing")
            await user.set_permissions(".*", "^$", ".*")
            await user.close_connections()  # the consumer's too: it binds again below
            await wait_for(
                lambda: len(one_line_each(bridge.log(), "ACCESS_REFUSED")) >= 2, 20, "2 refusals"
            )
            assert bridge.running  # mid-run a refusal is retried, whatever the setting
            await user.set_permissions(".*", ".*", ".*")
            async with Consumer.bound(user.url, names.exchange, names.queue) as after:
                await after.wait_until(lambda b: len(b) > 50, 30, "events after the restore")
                await asyncio.sleep(9.0)  # the traffic ends
                expected = pbx.events_sent + 2  # + FullyBooted + connected
                await after.wait_until(
                    lambda b: len(first_occurrences(consumer.bodies + b)) >= expected,
                    30,
                    f"{expected} distinct messages",
                )
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(20) == 0


async def test_actions_refused_keep_readyz_unready_and_events_flowing(
    rabbit_node: RabbitNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user allowed only the event exchange: the actions consumer retries with backoff,
    one line each time, and /readyz says so while events flow."""
    allowed = r"^(ami\.events.*|amq\.gen-.*)$"
    caplog.set_level(logging.WARNING, logger="bridge")
    async with (
        account(rabbit_node, configure=allowed, write=allowed, read=allowed) as user,
        AmiSimulator(port=0, secret=SECRET, rate=50, seed=7) as pbx,
        Consumer.bound(user.url, EXCHANGE, "ami.events.test") as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=user.url,
            exchange=EXCHANGE,
            journal_dir=tmp_path,
            rpc_exchange="ami.actions",
            amqp_reconnect_cap=1.0,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            await consumer.wait_until(lambda b: len(b) > 20, 10, "events flowing")
            await wait_for(
                lambda: sum("action requests:" in r.getMessage() for r in caplog.records) >= 2,
                15,
                "two refused attempts",
            )
            assert app.readiness() == (False, "action requests not consumed yet")
    refused = [r.getMessage() for r in caplog.records if "action requests:" in r.getMessage()]
    assert all("ACCESS_REFUSED" in line and "ami.actions" in line for line in refused), refused
    assert not any(r.exc_info for r in caplog.records)
