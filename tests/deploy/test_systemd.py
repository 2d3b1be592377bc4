"""deploy/systemd/ami-bridge.service: hardened, and consistent with the bridge's settings.

The unit's keys are checked on every machine; where ``systemd-analyze`` is installed it
also verifies the unit and rates its exposure (``security --offline``).  Its ExecStart
names the install path of the README, which a test machine lacks, so the copy given to
``systemd-analyze`` runs ``/bin/true`` instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from bridge.cli.exit_codes import ExitCode
from bridge.settings import ENV_PREFIX, Settings

from . import DEPLOY

UNIT = DEPLOY / "systemd" / "ami-bridge.service"
#: systemd-analyze's exposure rating (0 to 10) the unit must stay under.
MAX_EXPOSURE = 2.0

Unit = dict[str, dict[str, list[str]]]


def _unit(path: Path = UNIT) -> Unit:
    """Section -> key -> every value (a key may repeat); fails on a line it cannot read."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            section = unit.setdefault(header[1], defaultdict(list))
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        assert section is not None, line
        assert re.fullmatch(r"[A-Za-z]+", key), line
        section[key].append(value)
    return unit


def _service() -> dict[str, list[str]]:
    return _unit()["Service"]


def _environment() -> dict[str, str]:
    return dict(value.split("=", 1) for value in _service()["Environment"])


def test_the_unit_has_the_usual_hardening() -> None:
    service = _service()
    expected = {
        "DynamicUser": "yes",
        "User": "ami-bridge",
        "StateDirectory": "ami-bridge",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert service[key] == [value], key
    assert "@system-service" in service["SystemCallFilter"]
    assert set(_unit()) == {"Unit", "Service", "Install"}
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_runs_the_bridge_with_its_journal_in_the_state_directory() -> None:
    service = _service()
    (command,) = service["ExecStart"]
    assert command.endswith("/ami-bridge run")
    env = _environment()
    assert env[f"{ENV_PREFIX}JOURNAL_DIR"].startswith("%S/ami-bridge/")
    settable = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert set(env) - {f"{ENV_PREFIX}CONFIG"} <= settable
    # The secrets come from systemd credentials, never from the unit's own text.
    credentials = dict(value.split(":", 1) for value in service["LoadCredential"])
    assert env[f"{ENV_PREFIX}AMI_SECRET_FILE"] == "%d/ami_secret"
    assert env[f"{ENV_PREFIX}AMQP_PASSWORD_FILE"] == "%d/amqp_password"
    assert set(credentials) == {"ami_secret", "amqp_password"}


def test_stopping_leaves_time_to_drain_and_a_configuration_error_is_not_retried() -> None:
    service = _service()
    assert service["KillSignal"] == ["SIGTERM"]
    assert float(service["TimeoutStopSec"][0]) > Settings().shutdown_timeout + 5
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == [str(int(ExitCode.CONFIG_ERROR))]


@pytest.fixture
def verifiable(tmp_path: Path) -> Path:
    """A copy of the unit whose command exists on this machine."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; the unit's keys are checked above")
    copy = tmp_path / UNIT.name
    text = re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/true", UNIT.read_text())
    copy.write_text(text)
    return copy


def test_systemd_analyze_verifies_the_unit(verifiable: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_systemd_analyze_rates_the_unit_as_well_protected(verifiable: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(verifiable)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in done.stderr:  # systemd before 252
        pytest.skip(f"this systemd-analyze cannot rate a unit offline: {done.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match[1]) <= MAX_EXPOSURE, done.stdout
