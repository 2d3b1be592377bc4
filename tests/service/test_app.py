"""BridgeApp's start-up against a broker it cannot use: a clear exit, not a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import aio_pika
import pytest

from bridge.cli.exit_codes import ExitCode
from bridge.service.app import BridgeApp
from tests.integration.harness import bridge_settings
from tests.support import AmqpNames, amqp_connection


async def test_an_exchange_declared_otherwise_exits_1_with_a_clear_message(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(amqp_names.exchange, aio_pika.ExchangeType.FANOUT)
    settings = bridge_settings(
        {"pbx1": 9}, amqp=amqp_url, exchange=amqp_names.exchange, journal_dir=tmp_path
    )
    with caplog.at_level(logging.ERROR, logger="bridge.service.app"):
        assert await BridgeApp(settings).run() is ExitCode.FAILURE
    assert f"exchange {amqp_names.exchange!r}" in caplog.text
    assert "already exists with other settings" in caplog.text
