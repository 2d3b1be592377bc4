"""Shared fixtures: a RabbitMQ URL and per-test broker names that are cleaned up afterwards.

The broker is ``AMQP_URL``, else the local one on 127.0.0.1:5672, else one this run
starts (a private ``rabbitmq-server`` node or a container): see
:mod:`tests.support.broker_choice`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import AmqpNames, delete_names
from tests.support.broker_choice import NoBroker, find_broker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that talks to the broker carries the ``integration`` marker."""
    for item in items:
        if "amqp_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Commands run in-process set up logging on the stderr pytest captured for that test;
    a handler left on that stream after it is closed turns every later log line into a
    "Logging error" page."""
    root, bridge = logging.getLogger(), logging.getLogger("bridge")
    saved = (list(root.handlers), root.level, bridge.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    bridge.setLevel(saved[2])


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The broker the integration tests use (see :mod:`tests.support.broker_choice`).

    Without one the run stops at the first integration test, with one line saying what
    to install: a page of identical errors would hide it.
    """
    try:
        with find_broker() as url:
            yield url
    except NoBroker as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
async def amqp_names(amqp_url: str) -> AsyncIterator[AmqpNames]:
    """Unique exchange and queue names; every entity with these names is deleted after."""
    names = AmqpNames(f"test.{uuid.uuid4().hex[:12]}")
    yield names
    await delete_names(amqp_url, names)
