"""Shared fixtures: a RabbitMQ URL and per-test broker names that are cleaned up afterwards.

``AMQP_URL`` selects a running broker (``amqp://guest:guest@127.0.0.1:5672/``); without
it a throwaway RabbitMQ container is started through testcontainers, which needs Docker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest

from tests.support import AmqpNames, delete_names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that talks to the broker carries the ``integration`` marker."""
    for item in items:
        if "amqp_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The broker the integration tests use: ``$AMQP_URL`` or a RabbitMQ container."""
    url = os.environ.get("AMQP_URL")
    if url:
        yield url
        return
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # testcontainers before 4.9 kept it at the top level
        from testcontainers.rabbitmq import RabbitMqContainer
    with RabbitMqContainer() as broker:
        host = broker.get_container_host_ip()
        port = broker.get_exposed_port(broker.port)
        vhost = "" if broker.vhost == "/" else quote(broker.vhost, safe="")
        yield f"amqp://{broker.username}:{broker.password}@{host}:{port}/{vhost}"


@pytest.fixture
async def amqp_names(amqp_url: str) -> AsyncIterator[AmqpNames]:
    """Unique exchange and queue names; every entity with these names is deleted after."""
    names = AmqpNames(f"test.{uuid.uuid4().hex[:12]}")
    yield names
    await delete_names(amqp_url, names)
