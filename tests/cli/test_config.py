"""``ami-bridge config`` and the help texts: what a newcomer reads before a first run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import add_settings_arguments, env_var, settable_fields
from bridge.cli.main import main
from bridge.settings import ENV_PREFIX


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)


def config_lines(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, tuple[str, str]]:
    """Setting -> (value, source) as ``ami-bridge config ARGS`` prints them."""
    assert main(["config", *args]) == ExitCode.OK
    out = capsys.readouterr().out
    lines = out.splitlines()[1:]
    parsed = {}
    for line in lines:
        setting, _, rest = line.partition(" = ")
        value, _, source = rest.rpartition("  # ")
        parsed[setting] = (value, source)
    return parsed


def test_config_names_the_source_of_every_value_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('exchange = "from.file"\njournal_fsync = "never"\n')
    monkeypatch.setenv(env_var("amqp_password"), "env-hunter2")
    monkeypatch.setenv(env_var("log_level"), "DEBUG")
    monkeypatch.setenv(env_var("journal_fsync"), "always")  # the environment beats the file
    shown = config_lines(
        capsys, "--config", str(config), "--amqp", "amqp://bridge:flag-hunter2@mq:5672/"
    )

    assert shown["amqp"] == ("amqp://bridge:***@mq:5672/", "flag")
    assert shown["amqp_password"] == ("***", "env")
    assert shown["log_level"] == ("DEBUG", "env")
    assert shown["journal_fsync"] == ("always", "env")
    assert shown["exchange"] == ("from.file", "file")
    assert shown["publish_window"] == ("4000", "default")
    assert shown["redact_headers"] == ("none", "default")
    assert set(shown) >= set(settable_fields())
    assert "hunter2" not in capsys.readouterr().out + str(shown)


def test_config_masks_a_server_secret_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[[servers]]\nid = "pbx1"\nurl = "ami://bridge@10.0.0.1:5038"\nsecret = "t0psecret"\n'
    )
    shown = config_lines(capsys, "--config", str(config))
    assert shown["servers"] == ("id=pbx1 url=ami://bridge@10.0.0.1:5038 secret=***", "file")


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--publish-window", "0"], "invalid setting publish_window"),
        (["--amqp", "rabbit://x"], "invalid setting amqp: broker URL 'rabbit://x'"),
        (["--ami-secret-file", "/nonexistent/secret"], "cannot read the AMI secret file"),
        (["--config", "/nonexistent/bridge.toml"], "settings file /nonexistent/bridge.toml"),
    ],
)
def test_config_exits_2_with_one_line_on_an_invalid_configuration(
    args: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", *args]) == ExitCode.CONFIG_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ami-bridge config: {why}"), lines[0]


def test_run_help_shows_every_default_and_environment_variable() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    helps = {action.dest: action.help or "" for action in parser._actions}
    for name in settable_fields():
        assert f"env {env_var(name)}]" in helps[name], (name, helps[name])
        assert "[default: " in helps[name], (name, helps[name])
    assert "[default: 4000; env AMI_BRIDGE_PUBLISH_WINDOW]" in helps["publish_window"]
    assert "[default: none; env AMI_BRIDGE_AMI_SECRET_FILE]" in helps["ami_secret_file"]
    parser.format_help()  # every help text survives argparse's % formatting


def test_the_top_level_help_describes_the_product(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Asterisk Manager Interface" in out
    assert "RabbitMQ" in out
    assert "config" in out
    assert "Entry point" not in out
