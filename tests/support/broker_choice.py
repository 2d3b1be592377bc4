"""The RabbitMQ the integration tests use, found or started once per test run.

The first that works, in this order:

1. ``AMQP_URL`` when it is set;
2. the broker answering on 127.0.0.1:5672 (``guest``/``guest``, as a packaged RabbitMQ
   is set up);
3. a private ``rabbitmq-server`` node of this run (see :mod:`tests.support.rabbit_nodes`)
   when RabbitMQ is installed but not running;
4. a throwaway container through testcontainers when a Docker daemon answers.

Otherwise :class:`NoBroker` says, in one line, what to install.  ``make test`` and
``.ci/run`` both get their broker from here, so CI checks what a new user runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from tests.support.rabbit_nodes import RabbitNode, free_node_ports, rabbitmq_scripts

__all__ = ["LOCAL_URL", "NoBroker", "find_broker"]

LOCAL_URL = "amqp://guest:guest@127.0.0.1:5672/"
_LOCAL = ("127.0.0.1", 5672)


class NoBroker(RuntimeError):
    """No broker can be found or started; the message says what to install."""


def _answers(address: tuple[str, int]) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=1.0):
        return True
    return False


def _rabbitmq_installed() -> bool:
    try:
        rabbitmq_scripts()
    except RuntimeError:
        return False
    return True


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no client library, no socket, no daemon: all mean "no Docker"
        return False
    return True


@contextlib.contextmanager
def _private_node() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="amib-test-broker-") as root:
        home = Path(root) / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(f"AMIBRIDGETESTBROKER{os.getpid()}")
        cookie.chmod(0o400)
        node = RabbitNode(f"amib{os.getpid()}main", free_node_ports(1)[0], Path(root), home)
        node.start()
        try:
            node.wait_started()
            yield node.url
        finally:
            node.kill()


@contextlib.contextmanager
def _container() -> Iterator[str]:
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # testcontainers before 4.9 kept it at the top level
        from testcontainers.rabbitmq import RabbitMqContainer
    with RabbitMqContainer() as broker:
        host = broker.get_container_host_ip()
        port = broker.get_exposed_port(broker.port)
        vhost = "" if broker.vhost == "/" else quote(broker.vhost, safe="")
        yield f"amqp://{broker.username}:{broker.password}@{host}:{port}/{vhost}"


@contextlib.contextmanager
def find_broker() -> Iterator[str]:
    """The URL of a usable broker for the whole ``with`` block.

    Raises:
        NoBroker: none of the four ways works.
    """
    url = os.environ.get("AMQP_URL")
    if url:
        yield url
    elif _answers(_LOCAL):
        yield LOCAL_URL
    elif _rabbitmq_installed():
        with _private_node() as url:
            yield url
    elif _docker_answers():
        with _container() as url:
            yield url
    else:
        raise NoBroker(
            "the integration tests need RabbitMQ: install rabbitmq-server (or start Docker), "
            "or set AMQP_URL to a running broker"
        )
