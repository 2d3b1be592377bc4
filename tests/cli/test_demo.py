"""``ami-bridge demo`` as a child process: it names what stops it, and shows its own server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aio_pika
import yarl

from bridge.cli.exit_codes import ExitCode
from bridge.settings import ENV_PREFIX
from tests.integration.harness import free_port
from tests.support import AmqpNames, amqp_connection


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["NO_COLOR"] = "1"
    return env


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--duration", "20", *args],
        capture_output=True,
        text=True,
        timeout=40,
        cwd=cwd,
        env=_env(),
        check=False,
    )


def only_line(done: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    lines = done.stderr.splitlines()
    assert (done.returncode, len(lines)) == (code, 1), done.stderr
    assert done.stdout == ""
    return lines[0]


def test_a_busy_probe_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = only_line(demo("--metrics-port", str(port), cwd=tmp_path), ExitCode.CONFIG_ERROR)
    assert line.startswith(f"demo: cannot serve /healthz and /metrics on 0.0.0.0:{port}: ")
    assert "Address already in use" in line


def test_no_broker_is_said_once_with_how_to_start_one(tmp_path: Path) -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}/"
    line = only_line(demo("--amqp", url, "--metrics-port", "0", cwd=tmp_path), ExitCode.FAILURE)
    assert line.startswith("demo: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:")
    assert "rabbitmq-server" in line
    assert "s3cret" not in line


def test_a_bad_url_is_one_line(tmp_path: Path) -> None:
    line = only_line(demo("--amqp", "127.0.0.1", cwd=tmp_path), ExitCode.CONFIG_ERROR)
    assert line == (
        "demo: broker URL '127.0.0.1' must look like amqp://user@host:5672/vhost (or amqps://)"
    )


def test_a_refused_password_is_told_before_any_banner(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    wrong = str(yarl.URL(amqp_url).with_password("not-the-password"))
    args = ("--amqp", wrong, "--exchange", amqp_names.exchange, "--metrics-port", "0")
    line = only_line(demo(*args, cwd=tmp_path), ExitCode.CONFIG_ERROR)
    assert "ACCESS_REFUSED" in line
    assert "not-the-password" not in line


async def test_the_live_view_shows_the_start_and_only_its_own_server(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", "--amqp", amqp_url,
        "--exchange", amqp_names.exchange, "--metrics-port", "0", "--duration", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env=_env(),
    )  # fmt: skip
    assert process.stderr is not None
    async with asyncio.timeout(20):
        banner = await process.stderr.readline()  # printed once the view is bound
    assert banner.startswith(b"demo: simulator on 127.0.0.1:"), banner
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(amqp_names.exchange)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="other.call.hangup")
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()

    assert process.returncode == 0, stderr
    lines = [line for line in stdout.decode().splitlines() if not line.startswith("-- ")]
    assert all(line.split()[1] == "demo" for line in lines), lines[:5]
    first = [line.split()[2:4] for line in lines[:3]]
    assert ["bridge", "connected"] in first, lines[:3]
    assert any(line.split()[2:4] == ["bridge", "resync"] for line in lines)
    device = next(line for line in lines if " DeviceStateChange " in line)
    assert "Device=PJSIP/" in device  # the key fields, as tail prints them
