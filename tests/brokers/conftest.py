"""Private RabbitMQ nodes, started once per test session and shared by the tests here.

``rabbit_cluster`` is three nodes joined into one cluster (see
:mod:`tests.support.rabbit_nodes`); ``rabbit_node`` is one node of its own, for tests that
change a broker's settings (its memory watermark, its users and virtual hosts).  Tests
kill and restart nodes, but leave them running: each waits for the cluster to be whole
again before it ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rabbit_nodes import RabbitCluster, RabbitNode, free_node_ports


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    with (
        tempfile.TemporaryDirectory(prefix="amib-cluster-") as root,
        RabbitCluster(Path(root)).running() as cluster,
    ):
        yield cluster


@pytest.fixture(scope="session")
def rabbit_node(rabbit_cluster: RabbitCluster) -> Iterator[RabbitNode]:
    # Asks for the cluster first so the two never pick the same free ports.
    taken = {node.port for node in rabbit_cluster.nodes}
    with tempfile.TemporaryDirectory(prefix="amib-node-") as root:
        home = Path(root) / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text((rabbit_cluster.root / "home" / ".erlang.cookie").read_text())
        cookie.chmod(0o400)
        port = free_node_ports(1, taken)[0]
        node = RabbitNode(f"amib{os.getpid()}solo", port, Path(root), home)
        node.start()
        try:
            node.wait_started()
            yield node
        finally:
            node.kill()
