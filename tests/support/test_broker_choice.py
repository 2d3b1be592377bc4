"""The order in which the test run picks its broker, and the one line when there is none."""

from __future__ import annotations

import socket

import pytest

from tests.support import broker_choice
from tests.support.broker_choice import LOCAL_URL, NoBroker, find_broker


@pytest.fixture
def nothing_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AMQP_URL, nothing on the local port, no RabbitMQ installed, no Docker."""
    monkeypatch.delenv("AMQP_URL", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()
    monkeypatch.setattr(broker_choice, "_LOCAL", closed)
    monkeypatch.setattr(broker_choice, "_rabbitmq_installed", lambda: False)
    monkeypatch.setattr(broker_choice, "_docker_answers", lambda: False)


def test_amqp_url_wins(monkeypatch: pytest.MonkeyPatch, nothing_anywhere: None) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker.invalid:5672/v")
    with find_broker() as url:
        assert url == "amqp://u:p@broker.invalid:5672/v"


def test_a_broker_answering_on_the_local_port_is_used(
    monkeypatch: pytest.MonkeyPatch, nothing_anywhere: None
) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setattr(broker_choice, "_LOCAL", listening.getsockname())
        with find_broker() as url:
            assert url == LOCAL_URL


def test_without_any_broker_one_line_says_what_to_install(nothing_anywhere: None) -> None:
    with pytest.raises(NoBroker) as raised, find_broker():
        pass
    message = str(raised.value)
    assert "\n" not in message
    assert "install rabbitmq-server" in message
    assert "AMQP_URL" in message
