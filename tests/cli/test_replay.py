"""``ami-bridge replay`` renders with the same settings as the live bridge."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.cli import replay
from bridge.cli.exit_codes import ExitCode
from bridge.settings import ENV_PREFIX

CAPTURE = Path(__file__).parent.parent / "fixtures" / "captures" / "actions.ami"


def _replay(capture: Path, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    code = replay.run(parser.parse_args([str(capture), "--stdout"]))
    assert code == ExitCode.OK
    return capsys.readouterr().out.encode().splitlines()


def test_replay_leaves_out_the_headers_the_settings_redact(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert b"CallerIDName" in CAPTURE.read_bytes()
    plain = _replay(CAPTURE, capsys)
    assert any(b"CallerIDName" in line for line in plain)
    monkeypatch.setenv(f"{ENV_PREFIX}REDACT_HEADERS", "*CallerIDName")
    redacted = _replay(CAPTURE, capsys)
    assert len(redacted) == len(plain)
    assert not any(b"CallerIDName" in line for line in redacted)
    assert all(orjson.loads(line)["routing_key"] for line in redacted)


def test_an_unreadable_password_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}AMQP_PASSWORD_FILE", str(tmp_path / "missing"))
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    assert replay.run(parser.parse_args([str(CAPTURE), "--publish"])) == ExitCode.CONFIG_ERROR
    assert "AMQP password file" in capsys.readouterr().err


def test_replay_into_a_reader_that_stops_early_exits_quietly(tmp_path: Path) -> None:
    """``ami-bridge replay FILE --stdout | head -3``: no BrokenPipeError traceback."""
    big = Path(__file__).parent.parent / "fixtures" / "captures" / "calls-basic.ami"
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "replay", str(big), "--stdout"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    assert process.stdout is not None
    head = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()  # as head does after its third line
    _, stderr = process.communicate(timeout=60)

    assert all(orjson.loads(line)["routing_key"] for line in head)
    assert process.returncode == ExitCode.OK
    assert b"Traceback" not in stderr
    assert b"BrokenPipe" not in stderr
