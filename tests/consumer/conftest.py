"""Broker names for the consumer tests: the test's exchange plus its dead-letter pair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bridge.consumer import dead_letter_name
from tests.support import AmqpNames, delete_names


@dataclass(frozen=True)
class ConsumerNames(AmqpNames):
    """:class:`AmqpNames` plus the dead-letter exchange and queue of the test's consumers."""

    @property
    def dead_letter_exchange(self) -> str:
        return dead_letter_name(self.exchange)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.exchange}.dead"

    @property
    def exchanges(self) -> tuple[str, ...]:
        return (*super().exchanges, self.dead_letter_exchange)

    @property
    def queues(self) -> tuple[str, ...]:
        return (*super().queues, self.dead_letter_queue)


@pytest.fixture
async def names(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[ConsumerNames]:
    """Unique names for one test; every entity named by them is deleted after it."""
    consumer_names = ConsumerNames(amqp_names.exchange)
    yield consumer_names
    await delete_names(amqp_url, consumer_names)
