"""``ami-bridge replay`` renders with the same settings as the live bridge."""

from __future__ import annotations

import argparse
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
