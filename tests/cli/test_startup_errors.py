"""Every startup mistake of ``ami-bridge run`` is one line on stderr and exit code 2.

Each case runs the command as a child process, as an operator would, and asserts the
whole of stderr: a traceback or a second line fails the test.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli.exit_codes import ExitCode
from bridge.cli.run import warn_missing_secrets, warn_password_in_flag
from bridge.settings import ENV_PREFIX, load_settings

# No broker is ever reached: every case fails before the bridge connects.
_NO_BROKER = "amqp://guest@127.0.0.1:9/"


def ami_bridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=env,
        check=False,
    )


def one_line_exit_2(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a run that exited 2."""
    lines = done.stderr.splitlines()
    assert (done.returncode, len(lines)) == (ExitCode.CONFIG_ERROR, 1), done.stderr
    assert lines[0].startswith("ami-bridge: "), lines[0]
    return lines[0]


def run_bridge(tmp_path: Path, *args: str) -> str:
    defaults = ("--amqp", _NO_BROKER, "--journal-dir", str(tmp_path / "journal"))
    return one_line_exit_2(ami_bridge("run", *defaults, *args, cwd=tmp_path))


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder the bridge may not create files in (root may write anywhere but /sys)."""
    if os.geteuid() == 0:
        yield Path("/sys/ami-bridge-journal")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder / "journal"
    folder.chmod(0o700)


def test_a_journal_folder_that_cannot_be_written(tmp_path: Path, unwritable_dir: Path) -> None:
    line = run_bridge(tmp_path, "--journal-dir", str(unwritable_dir), "--metrics-port", "0")
    assert f"journal directory {unwritable_dir}/pbx1 is not writable" in line


def test_a_journal_folder_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "journal.txt"
    file.write_text("not a folder")
    line = run_bridge(tmp_path, "--journal-dir", str(file), "--metrics-port", "0")
    assert f"journal directory {file}/pbx1 is not writable" in line
    assert "Not a directory" in line


def test_a_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = run_bridge(tmp_path, "--metrics-host", "127.0.0.1", "--metrics-port", str(port))
    assert f"cannot serve /healthz and /metrics on 127.0.0.1:{port}" in line
    assert "Address already in use" in line


def test_a_metrics_host_that_is_not_on_this_machine(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: never a local address.
    line = run_bridge(tmp_path, "--metrics-host", "192.0.2.1", "--metrics-port", "9108")
    assert "cannot serve /healthz and /metrics on 192.0.2.1:9108" in line
    assert "Cannot assign requested address" in line


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("rabbit://foo", "must look like amqp://"),
        ("127.0.0.1", "must look like amqp://"),
        ("amqp://127.0.0.1:notaport/", "has a port that is not 1 to 65535"),
        ("amqp:///vhost", "must look like amqp://"),
    ],
)
def test_a_broker_url_that_cannot_work(tmp_path: Path, url: str, why: str) -> None:
    line = run_bridge(tmp_path, "--amqp", url)
    assert line.startswith(f"ami-bridge: invalid setting amqp: broker URL {url!r} "), line
    assert why in line


def test_a_bad_broker_url_does_not_show_its_password(tmp_path: Path) -> None:
    line = run_bridge(tmp_path, "--amqp", "amqp://bridge:hunter2@127.0.0.1:port/")
    assert "hunter2" not in line
    assert "'amqp://bridge:***@127.0.0.1:port/'" in line


def test_a_bad_toml_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("exchange = \n")
    line = run_bridge(tmp_path, "--config", str(config))
    assert line.startswith(f"ami-bridge: settings file {config}: "), line


def test_no_ami_secret_is_one_warning_at_start(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"ami": ["a=ami://x@127.0.0.1:1", "b=ami://x@127.0.0.1:2"]})
    with caplog.at_level(logging.WARNING):
        warn_missing_secrets(settings)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["a", "b"]
    assert all("no AMI secret configured" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_missing_secrets(load_settings({"ami": ["a=ami://x@127.0.0.1:1"], "ami_secret": "s"}))
    assert not caplog.records


def test_a_password_in_the_amqp_flag_gets_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warn_password_in_flag(argparse.Namespace(amqp=["amqp://bridge:hunter2@127.0.0.1/"]))
        warn_password_in_flag(argparse.Namespace(amqp=["amqp://bridge@127.0.0.1/"]))
        warn_password_in_flag(argparse.Namespace(amqp=None))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "AMI_BRIDGE_AMQP_PASSWORD_FILE" in message
    assert "hunter2" not in message
