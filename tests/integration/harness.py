"""Running the whole bridge against real peers: in-process, as a process, and a consumer.

* :func:`bridge_settings` and :func:`running_bridge` run :class:`BridgeApp` on the test's
  own event loop, next to an in-process AMI simulator or fake server.
* :class:`BridgeProcess` runs ``python -m bridge run`` as a child process (for signals,
  exit codes and log lines), on asyncio's subprocess API so in-process peers keep
  serving while the test waits on it.
* :class:`Consumer` binds a queue to ``#`` on the bridge's exchange *before* the bridge
  starts (declaring the same topology the bridge declares), so nothing published goes
  to the unrouted queue, and keeps every delivery in arrival order.
* :func:`scrape_metrics` reads the bridge's ``/metrics`` endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import yarl
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli.exit_codes import ExitCode
from bridge.publish.topology import declare_topology
from bridge.service.app import BridgeApp
from bridge.settings import ENV_PREFIX, Settings, load_settings
from tests.integration.contract import Body, check_delivery
from tests.support import amqp_connection, bind_queue
from tests.support.tcp_proxy import TcpProxy

__all__ = [
    "SECRET",
    "BridgeProcess",
    "Consumer",
    "bridge_settings",
    "broker_address",
    "free_port",
    "json_lines",
    "run_args",
    "running_bridge",
    "scrape_metrics",
    "via_proxy",
    "wait_for",
]

#: The AMI secret every simulator and fake server of these tests accepts.
SECRET = "integration-s3cret"

#: Resync and actions over the bus are off unless a test turns them on: they have tests of
#: their own, and the others count exact message streams on exchanges they clean up.
QUIET_FEATURES: dict[str, Any] = {"resync_actions": [], "rpc_exchange": "", "stream": False}


def bridge_settings(
    servers: Mapping[str, int],
    *,
    amqp: str,
    exchange: str,
    journal_dir: Path,
    **extra: Any,
) -> Settings:
    """Settings for an in-process bridge: one ``id=ami://bridge@127.0.0.1:port`` per server."""
    return load_settings(
        {
            "ami": [f"{sid}=ami://bridge@127.0.0.1:{port}" for sid, port in servers.items()],
            "ami_secret": SECRET,
            "amqp": amqp,
            "exchange": exchange,
            "journal_dir": journal_dir,
            "metrics_port": 0,
            **QUIET_FEATURES,
            **extra,
        }
    )


def broker_address(amqp_url: str) -> tuple[str, int]:
    """Host and port of the broker, for a :class:`TcpProxy` in front of it."""
    url = yarl.URL(amqp_url)
    return url.host or "127.0.0.1", url.port or 5672


def via_proxy(amqp_url: str, proxy: TcpProxy) -> str:
    """``amqp_url`` pointed at ``proxy`` instead of the broker."""
    return str(yarl.URL(amqp_url).with_host("127.0.0.1").with_port(proxy.port))


def run_args(
    servers: Mapping[str, int], *, amqp: str, exchange: str, journal_dir: Path, **flags: object
) -> list[str]:
    """``run`` and its flags for a bridge process; ``flags`` by setting name."""
    args = ["run", "--amqp", amqp, "--exchange", exchange, "--journal-dir", str(journal_dir)]
    for sid, port in servers.items():
        args += ["--ami", f"{sid}=ami://bridge@127.0.0.1:{port}"]
    flags = {"metrics_port": 0, **QUIET_FEATURES, **flags}
    for name, value in flags.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
            continue
        text = ",".join(value) if isinstance(value, list) else str(value)
        args += [f"--{flag}", text]
    return args


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], within: float, what: str
) -> None:
    """Poll ``predicate`` (sync or async) until true.

    Raises:
        TimeoutError: still false after ``within`` seconds; the message says ``what``.
    """
    try:
        async with asyncio.timeout(within):
            while True:
                outcome = predicate()
                if not isinstance(outcome, bool):
                    outcome = await outcome
                if outcome:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"waited {within} s for {what}") from None


@asynccontextmanager
async def running_bridge(
    settings: Settings, *, stop_within: float = 15.0
) -> AsyncIterator[BridgeApp]:
    """Run a :class:`BridgeApp` until the block ends; it is connected to the broker on entry.

    On exit the bridge is stopped gracefully and must exit with code 0.
    """
    app = BridgeApp(settings)
    task = asyncio.create_task(app.run(), name="bridge-under-test")
    try:
        await wait_for(
            lambda: app.publisher.is_connected or task.done(), 10.0, "the bridge to connect"
        )
        if task.done():
            raise AssertionError(f"the bridge ended at start with {task.result()!r}")
        yield app
    finally:
        app.request_stop()
        try:
            async with asyncio.timeout(stop_within):
                code = await task
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
    assert code is ExitCode.OK


@asynccontextmanager
async def consuming(
    url: str,
    exchange: str,
    queue: str,
    deliver: Callable[[AbstractIncomingMessage], Awaitable[None]],
    prefetch: int = 2000,
) -> AsyncIterator[None]:
    """Declare the bridge's topology, bind ``queue`` to ``#`` and hand each delivery to
    ``deliver`` (no acks) until the block ends."""
    async with amqp_connection(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        await declare_topology(channel, exchange)
        declared = await bind_queue(channel, exchange, queue)
        tag = await declared.consume(deliver, no_ack=True)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await declared.cancel(tag)


class Consumer:
    """Every delivery on ``queue`` (bound to ``#``), checked and kept in arrival order.

    A delivery that breaks the contract is kept in ``failures`` and re-raised by the
    waiters and on exit, instead of vanishing inside aio-pika's callback.
    """

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []
        self.bodies: list[Body] = []
        self.failures: list[BaseException] = []
        self._arrived = asyncio.Event()

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        try:
            body = check_delivery(message)
        except BaseException as exc:
            self.failures.append(exc)
        else:
            self.messages.append(message)
            self.bodies.append(body)
        self._arrived.set()

    @classmethod
    @asynccontextmanager
    async def bound(cls, url: str, exchange: str, queue: str) -> AsyncIterator[Consumer]:
        """Declare the bridge's topology, bind ``queue`` to ``#`` and consume it."""
        consumer = cls()
        async with consuming(url, exchange, queue, consumer._deliver):
            yield consumer
        consumer.raise_failures()

    def raise_failures(self) -> None:
        """Re-raise the first delivery that broke the contract."""
        if self.failures:
            raise self.failures[0]

    async def wait_until(
        self, done: Callable[[list[Body]], bool], within: float, what: str
    ) -> None:
        """Wait until ``done(bodies)`` holds (checked on each arrival).

        Raises:
            TimeoutError: it did not within ``within`` seconds; the message tells how many
                messages had arrived.
        """
        try:
            async with asyncio.timeout(within):
                while True:
                    self.raise_failures()
                    if done(self.bodies):
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"waited {within} s for {what}; {len(self.bodies)} messages arrived"
            ) from None

    async def wait_quiet(self, seconds: float) -> None:
        """Wait until nothing arrived for ``seconds`` (bounded by 10 quiet periods)."""
        for _ in range(10):
            count = len(self.bodies)
            await asyncio.sleep(seconds)
            if len(self.bodies) == count:
                return


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape_metrics(port: int) -> dict[str, float]:
    """``/metrics`` of a bridge: each sample summed over its labels, by sample name."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return metric_totals(response.partition(b"\r\n\r\n")[2].decode())


def metric_totals(text: str) -> dict[str, float]:
    """Each sample of a ``/metrics`` text summed over its labels, by sample name."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


class BridgeProcess:
    """``python -m bridge <args>`` as a child process, stderr kept in ``log_file``.

    The environment is the test's own without any ``AMI_BRIDGE_*`` variable, plus ``env``.
    It runs in the folder of ``log_file`` (the test's temporary folder), so a default
    relative path such as ``journal/`` never lands in the checkout.
    """

    def __init__(self, args: list[str], log_file: Path, env: Mapping[str, str] = {}) -> None:
        self.args = args
        self.log_file = log_file
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.env.update(env)
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_file.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge",
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                cwd=self.log_file.parent,
            )

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "start() first"
        return self._process

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.log_file.read_text(errors="replace")

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, within: float) -> int:
        """The exit code, waiting at most ``within`` seconds.

        Raises:
            TimeoutError: still running; the message carries its log.
        """
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            raise TimeoutError(
                f"bridge process still running after {within} s; log:\n{self.log()}"
            ) from None

    async def ensure_stopped(self) -> None:
        """Kill the process if it still runs (test cleanup)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def __aenter__(self) -> BridgeProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ensure_stopped()


async def replay(path: Path, server: str) -> tuple[int, bytes, bytes]:
    """Run ``ami-bridge replay PATH --stdout``: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "replay",
        str(path),
        "--stdout",
        "--server-id",
        server,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out, err


def json_lines(text: bytes) -> list[Body]:
    """Parse JSON-lines output."""
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]
