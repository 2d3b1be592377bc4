"""The probe and metrics endpoint: its routes, and answers that never wait for the loop."""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from bridge.ami.read_priority import read_priority
from bridge.service.http import HealthServer
from tests.support.polling import eventually


class State:
    def __init__(self) -> None:
        self.ready = (False, "pbx1: AMI not logged in")

    def readiness(self) -> tuple[bool, str]:
        return self.ready

    def metrics(self) -> bytes:
        return b"# HELP x y\nx 1.0\n"


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, State]]:
    state = State()
    server = HealthServer("127.0.0.1", 0, ready=state.readiness, metrics=state.metrics)
    await server.start()
    try:
        yield server, state
    finally:
        await server.stop()


def ask(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


async def test_the_routes(served: tuple[HealthServer, State]) -> None:
    server, state = served
    port = server.port
    status, headers, body = await asyncio.to_thread(ask, port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert (headers["Content-Type"], headers["Content-Length"]) == ("text/plain", "3")
    status, _, body = await asyncio.to_thread(ask, port, "/readyz")
    assert (status, body) == (503, b"pbx1: AMI not logged in\n")
    state.ready = (True, "ready")
    status, _, body = await asyncio.to_thread(ask, port, "/readyz?verbose")
    assert (status, body) == (200, b"ready\n")
    status, headers, body = await asyncio.to_thread(ask, port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert body == state.metrics()
    assert (await asyncio.to_thread(ask, port, "/nowhere"))[0] == 404
    assert (await asyncio.to_thread(ask, port, "/healthz", "POST"))[0] == 405
    status, headers, body = await asyncio.to_thread(ask, port, "/metrics", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(state.metrics()))


#: A prober in a process of its own, as a kubelet is: it prints each answer's time.
PROBER = """
import http.client, sys, time
port = int(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for path in ["/healthz", "/readyz", "/metrics"] * 5:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    conn.getresponse().read()
    conn.close()
    print(time.perf_counter() - started, flush=True)
"""


async def test_probes_are_answered_while_the_event_loop_is_busy(
    served: tuple[HealthServer, State],
) -> None:
    """A loop that computes for a second without yielding (a long render turn) does not
    delay the answers: they come from the server's own thread, which only waits for the
    interpreter's lock."""
    server, _ = served
    prober = subprocess.Popen(  # noqa: ASYNC220 - the loop is meant to block here
        [sys.executable, "-c", PROBER, str(server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert prober.stdin is not None
    assert prober.stdout is not None
    assert prober.stdout.readline() == "ready\n"
    prober.stdin.write("go\n")
    prober.stdin.flush()
    busy_until = time.perf_counter() + 1.0
    while time.perf_counter() < busy_until:  # the event loop kept busy, on purpose
        pass
    out, _ = prober.communicate(timeout=10)
    times = [float(line) for line in out.split()]
    assert len(times) == 15
    assert max(times) < 0.1, times


async def test_publishing_steps_aside_while_an_answer_is_written_not_while_waiting() -> None:
    """Rendering and publishing wait for an answer being written, never for a client that
    has not finished its request."""
    answering: list[int] = []

    def metrics() -> bytes:
        answering.append(read_priority.probes_answering)
        return b"x 1.0\n"

    server = HealthServer("127.0.0.1", 0, ready=State().readiness, metrics=metrics)
    await server.start()
    try:
        await asyncio.to_thread(ask, server.port, "/metrics")
        assert answering == [1], "an answer in progress makes the heavy work wait"
        # The client can have its answer before the server's thread has left the block.
        await eventually(lambda: read_priority.probes_answering == 0, within=1.0)
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            silent.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the blank line
            await asyncio.sleep(0.1)
            assert read_priority.probes_answering == 0
            assert await read_priority.step_aside(longest=0.05) == 0.0
    finally:
        await server.stop()


async def test_a_silent_client_does_not_hold_up_the_others(
    served: tuple[HealthServer, State],
) -> None:
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port)):
        status, _, _ = await asyncio.to_thread(ask, server.port, "/healthz")
    assert status == 200


async def test_a_port_in_use_is_an_error_at_start(served: tuple[HealthServer, State]) -> None:
    server, state = served
    second = HealthServer("127.0.0.1", server.port, ready=state.readiness, metrics=state.metrics)
    with pytest.raises(OSError):
        await second.start()


async def test_stop_closes_the_port() -> None:
    state = State()
    server = HealthServer("127.0.0.1", 0, ready=state.readiness, metrics=state.metrics)
    await server.start()
    port = server.port
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        ask(port, "/healthz")
