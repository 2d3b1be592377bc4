"""The permissions of ``deploy/rabbitmq/definitions.json`` are enough for the bridge.

Its user's configure/write/read patterns are given to a throwaway user on a private
virtual host; the bridge then declares its topology, publishes events, and answers an
action request sent by a client with the same user, on the exchange names the
deployment uses.
"""

from __future__ import annotations

from pathlib import Path

from bridge.ami.simulator import AmiSimulator
from bridge.service.rpc_client import ActionClient
from bridge.settings import DEFAULT_EXCHANGE, Settings
from tests.brokers.access import account
from tests.deploy import definitions
from tests.integration.harness import (
    SECRET,
    Consumer,
    bridge_settings,
    running_bridge,
    wait_for,
)
from tests.support.rabbit_nodes import RabbitNode


async def test_the_deployed_permissions_let_the_bridge_publish_and_take_actions(
    rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    (permission,) = definitions()["permissions"]
    actions = Settings().rpc_exchange
    patterns = {access: permission[access] for access in ("configure", "write", "read")}
    async with (
        account(rabbit_node, **patterns) as user,
        AmiSimulator(port=0, secret=SECRET, rate=20, seed=8) as pbx,
        Consumer.bound(user.url, DEFAULT_EXCHANGE, f"{DEFAULT_EXCHANGE}.test") as consumer,
    ):
        settings = bridge_settings(
            {"pbx1": pbx.port},
            amqp=user.url,
            exchange=DEFAULT_EXCHANGE,
            journal_dir=tmp_path,
            rpc_exchange=actions,
        )
        async with running_bridge(settings) as app:
            await consumer.wait_until(lambda b: len(b) > 5, 15, "events flowing")
            await wait_for(lambda: app.readiness()[0], 15, "the actions consumer")
            assert app.readiness() == (True, f"ready; taking action requests on {actions!r}")
            async with ActionClient(user.url, exchange=actions) as client:
                reply = await client.call("pbx1", "Ping", timeout=10)
            assert reply.ok, reply
            assert reply.server == "pbx1"
