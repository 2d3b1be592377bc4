"""TLS on both sides of the bridge, with certificate and host name verification always on.

* AMI: the simulator serves ``amis://`` with a certificate from a throwaway CA; the bridge
  trusts that CA through ``ami_ca_file`` and events reach the broker, whether it connects
  by ``localhost`` or ``127.0.0.1``.
* AMQP: a TLS-terminating proxy stands in front of the real RabbitMQ; the bridge
  publishes through it with ``amqps://`` and ``amqp_ca_file``.
* Refusals: a certificate from another CA or for another host name is refused on both
  sides with one log line that names the peer and says why, and retried with backoff.
  The process stays up, logs no traceback, and ``/readyz`` answers 503 meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yarl
from pydantic import SecretStr

from bridge.ami.client import AmiConnection, StreamItem
from bridge.ami.errors import AmiConnectionError
from bridge.ami.login import log_in
from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import parse_ami_url
from bridge.cli.exit_codes import ExitCode
from bridge.service.app import BridgeApp
from bridge.tls import tls_client_context
from tests.integration.contract import Body
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    Consumer,
    bridge_settings,
    broker_address,
    free_port,
    run_args,
    running_bridge,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy
from tests.support.tls import TestCa

SERVER = "pbx1"
#: Fast retries, so a refused handshake is seen several times within a test.
FAST_RETRY = {"ami_reconnect_base": 0.05, "ami_reconnect_cap": 0.3}
FAST_BROKER_RETRY = {"amqp_reconnect_base": 0.05, "amqp_reconnect_cap": 0.3}
RETRY_DELAY = re.compile(r"; retrying in ([\d.]+) s$")
#: What OpenSSL says for each refusal, by the name the bridge connected with.
UNTRUSTED = "unable to get local issuer certificate"
MISNAMED = {
    "localhost": "Hostname mismatch, certificate is not valid for 'localhost'",
    "127.0.0.1": "IP address mismatch, certificate is not valid for '127.0.0.1'",
}


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path, "ca")


@pytest.fixture
def other_ca(tmp_path: Path) -> TestCa:
    """A CA the servers never use: trusting only it must fail every handshake."""
    return TestCa(tmp_path, "other-ca")


async def http_get(port: int, path: str) -> tuple[int, str]:
    """Status code and body of ``GET path`` on the bridge's probe port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(5):
            response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def probe(port: int, path: str) -> tuple[int, str]:
    """Like :func:`http_get`, waiting for the probe port to open first."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await http_get(port, path)
            except OSError:
                await asyncio.sleep(0.05)


def events_from(bodies: list[Body], server: str) -> list[Body]:
    return [b for b in bodies if b["server"] == server and b["kind"] == "event"]


@contextlib.asynccontextmanager
async def bridge_task(app: BridgeApp) -> AsyncIterator[asyncio.Task[ExitCode]]:
    """Run ``app`` without waiting for the broker; stop it (and check exit 0) after."""
    task = asyncio.create_task(app.run(), name="bridge-under-test")
    try:
        yield task
    finally:
        app.request_stop()
        async with asyncio.timeout(15):
            code = await task
    assert code is ExitCode.OK


def failures(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


# -- AMI over TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_events_flow_over_amis_with_the_ca_file(
    host: str, ca: TestCa, amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(
            port=0, secret=SECRET, rate=200, seed=5, ssl_context=ca.server_context()
        ) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        target = f"amis://bridge@{host}:{pbx.port}"
        settings = bridge_settings(
            {},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami=[f"{SERVER}={target}"],
            ami_ca_file=ca.ca_file,
        )
        async with running_bridge(settings) as app:
            await consumer.wait_until(
                lambda bodies: len(events_from(bodies, SERVER)) >= 100, 15, "100 events over TLS"
            )
            assert app.pipelines[0].session.connected
    connected = [b for b in consumer.bodies if b["event"] == "connected"]
    assert connected[0]["fields"]["target"] == target


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_misnamed_amis_certificate_is_retried_and_never_ready(
    host: str,
    ca: TestCa,
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = f"amis://bridge@{host}"
    async with AmiSimulator(
        port=0, secret=SECRET, rate=0, ssl_context=ca.server_context("pbx.example")
    ) as pbx:
        metrics_port = free_port()
        settings = bridge_settings(
            {},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami=[f"{SERVER}={target}:{pbx.port}"],
            ami_ca_file=ca.ca_file,
            metrics_port=metrics_port,
            **FAST_RETRY,
        )
        app = BridgeApp(settings)
        with caplog.at_level(logging.WARNING, logger="bridge"):
            async with bridge_task(app) as task:
                await wait_for(
                    lambda: len(failures(caplog, "certificate verification failed")) >= 3,
                    10,
                    "three refused handshakes",
                )
                assert not task.done()
                status, body = await probe(metrics_port, "/readyz")
                assert (status, body.strip()) == (503, f"{SERVER}: AMI not logged in")
                assert pbx.sessions == 0
    refused = failures(caplog, "certificate verification failed")
    for record in refused:
        message = record.getMessage()
        assert message.startswith(f"{SERVER}: AMI connection failed: TLS handshake with {target}:")
        assert MISNAMED[host] in message
        assert "does not list this host" in message
        assert record.exc_info is None
    delays = [float(m) for r in refused for m in RETRY_DELAY.findall(r.getMessage())]
    assert len(delays) == len(refused)
    assert all(0 <= delay <= FAST_RETRY["ami_reconnect_cap"] for delay in delays)
    assert not any(r.exc_info for r in caplog.records)


async def test_an_untrusted_amis_certificate_keeps_the_process_up_and_unready(
    ca: TestCa, other_ca: TestCa, amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    """As a real process (uvloop, the CLI's logging): one clear line per attempt."""
    metrics_port = free_port()
    async with AmiSimulator(port=0, secret=SECRET, rate=0, ssl_context=ca.server_context()) as pbx:
        target = f"amis://bridge@localhost:{pbx.port}"
        args = run_args(
            {},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami=f"{SERVER}={target}",
            ami_ca_file=other_ca.ca_file,
            metrics_port=metrics_port,
            **FAST_RETRY,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            await wait_for(
                lambda: bridge.log().count("certificate verification failed") >= 3,
                15,
                f"three refused handshakes in the log:\n{bridge.log()}",
            )
            status, body = await probe(metrics_port, "/readyz")
            assert (status, body.strip()) == (503, f"{SERVER}: AMI not logged in")
            assert bridge.running
            assert pbx.sessions == 0
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == 0
    log = bridge.log()
    lines = [line for line in log.splitlines() if "certificate verification failed" in line]
    expected = (
        f"WARNING bridge.ami.session: {SERVER}: AMI connection failed: TLS handshake with {target} "
        "failed: certificate verification failed: "
        f"{UNTRUSTED} (CERTIFICATE_VERIFY_FAILED); the CA that signed the server's "
        "certificate is not trusted: configure its CA bundle; retrying in "
    )
    assert all(expected in line for line in lines), lines[0]
    assert "Traceback" not in log


async def test_amis_to_a_plain_ami_port_says_the_server_does_not_speak_tls() -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        target = parse_ami_url(f"amis://bridge@127.0.0.1:{pbx.port}")
        with pytest.raises(AmiConnectionError) as refused:
            await AmiConnection.open(target, on_items=lambda items: None)
    assert str(refused.value) == (
        f"TLS handshake with {target} failed: WRONG_VERSION_NUMBER; "
        "the server does not speak TLS on this port"
    )


# -- AMQP over TLS --------------------------------------------------------------------------


def amqps_url(amqp_url: str, host: str, proxy: TcpProxy) -> str:
    """``amqp_url`` (credentials included) as ``amqps://`` to ``host`` at the TLS proxy."""
    url = yarl.URL(amqp_url).with_scheme("amqps").with_host(host).with_port(proxy.port)
    return str(url)


async def test_events_flow_through_an_amqps_broker_with_the_ca_file(
    ca: TestCa, amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url), tls=ca.server_context()) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=200, seed=6) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqps_url(amqp_url, "localhost", proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            amqp_ca_file=ca.ca_file,
        )
        async with running_bridge(settings) as app:
            await consumer.wait_until(
                lambda bodies: len(events_from(bodies, SERVER)) >= 100, 15, "100 events"
            )
            assert app.publisher.is_connected
            assert proxy.active >= 1  # the bridge's connections go through TLS


@pytest.mark.parametrize(
    ("host", "server_names", "trusted", "why"),
    [
        ("localhost", (), False, UNTRUSTED),
        ("localhost", ("pbx.example",), True, MISNAMED["localhost"]),
        ("127.0.0.1", ("pbx.example",), True, MISNAMED["127.0.0.1"]),
    ],
    ids=["untrusted-ca", "misnamed-localhost", "misnamed-ip"],
)
async def test_a_refused_amqps_certificate_is_an_outage_retried_with_backoff(
    host: str,
    server_names: tuple[str, ...],
    trusted: bool,
    why: str,
    ca: TestCa,
    other_ca: TestCa,
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics_port = free_port()
    async with TcpProxy(*broker_address(amqp_url), tls=ca.server_context(*server_names)) as proxy:
        url = amqps_url(amqp_url, host, proxy)
        settings = bridge_settings(
            {SERVER: free_port()},
            amqp=url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            amqp_ca_file=(ca if trusted else other_ca).ca_file,
            amqp_on_auth_failure="exit",  # a TLS refusal must not count as bad credentials
            metrics_port=metrics_port,
            **FAST_BROKER_RETRY,
        )
        app = BridgeApp(settings)
        with caplog.at_level(logging.WARNING, logger="bridge.publish.failover"):
            async with bridge_task(app) as task:
                await wait_for(
                    lambda: len(failures(caplog, "retrying in")) >= 3, 10, "three retries"
                )
                assert not task.done()
                status, body = await probe(metrics_port, "/readyz")
                assert status == 503
                assert "broker not connected" in body
    masked = str(yarl.URL(url).with_password("***"))
    for record in failures(caplog, "retrying in"):
        message = record.getMessage()
        assert message.startswith(
            f"publishing: broker {masked} unavailable: TLS handshake failed: certificate "
            "verification "
            f"failed: {why} (CERTIFICATE_VERIFY_FAILED); "
        )
        assert record.exc_info is None


# -- configuration and the simulator's TLS flags --------------------------------------------


async def test_an_unreadable_ami_ca_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    args = ["run", "--ami", "pbx1=amis://bridge@localhost:5039", "--ami-ca-file", str(missing)]
    async with BridgeProcess(args, tmp_path / "bridge.log") as bridge:
        assert await bridge.wait(15) == ExitCode.CONFIG_ERROR
    assert bridge.log().strip() == (
        "ami-bridge: the CA file for amis://bridge@localhost:5039 is unusable: "
        f"cannot read {missing}: No such file or directory"
    )


async def test_an_unreadable_amqp_ca_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    args = ["run", "--amqp", "amqps://guest@localhost:5671/", "--amqp-ca-file", str(missing)]
    args += ["--metrics-port", "0", "--journal-dir", str(tmp_path / "journal")]
    async with BridgeProcess(args, tmp_path / "bridge.log") as bridge:
        code = await bridge.wait(15)
    assert "Traceback" not in bridge.log()
    assert str(missing) in bridge.log()
    assert code == ExitCode.CONFIG_ERROR


async def test_the_simulate_command_serves_amis(ca: TestCa, tmp_path: Path) -> None:
    cert = ca.issue()
    port = free_port()
    args = ["simulate", "--port", str(port), "--rate", "100", "--secret", SECRET]
    args += ["--tls-cert", str(cert.cert_file), "--tls-key", str(cert.key_file)]
    async with BridgeProcess(args, tmp_path / "simulate.log") as simulator:
        target = parse_ami_url(f"amis://bridge@localhost:{port}")
        context = tls_client_context(ca.ca_file)
        events: list[StreamItem] = []
        listening = f"listening on amis://127.0.0.1:{port}"
        await wait_for(lambda: listening in simulator.log(), 10, "the simulator to listen")
        async with await AmiConnection.open(
            target, on_items=events.extend, ssl_context=context
        ) as conn:
            await log_in(conn, SecretStr(SECRET), auth="md5", events="on", timeout=5)
            await wait_for(lambda: len(events) >= 20, 5, "20 events over TLS")
        simulator.send_signal(signal.SIGTERM)
        assert await simulator.wait(10) == 0
    assert "Traceback" not in simulator.log()


async def test_the_simulate_command_refuses_a_key_without_a_certificate(tmp_path: Path) -> None:
    args = ["simulate", "--port", "0", "--tls-key", str(tmp_path / "server.key")]
    async with BridgeProcess(args, tmp_path / "simulate.log") as simulator:
        assert await simulator.wait(10) == ExitCode.CONFIG_ERROR
    assert "--tls-key needs --tls-cert" in simulator.log()
