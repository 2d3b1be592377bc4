"""Tests of the container image, the deployment manifests and the configuration reference.

The readers below turn the Dockerfile and the files under ``deploy/`` into plain data so
the tests can hold every value that must agree with the code (names, ports, paths) to
the constants in ``bridge``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from bridge.service.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON-array arguments of CMD, ENTRYPOINT or VOLUME."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(item) for item in value]

    def pairs(self) -> dict[str, str]:
        """``KEY=value`` arguments of ENV, LABEL or ARG, quotes removed."""
        result = {}
        for token in shlex.split(self.args):
            key, _, value = token.partition("=")
            result[key] = value
        return result


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction of the Dockerfile, numbered by stage (0 before the first FROM)."""
    instructions = []
    stage = 0
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), " ".join(args.split()), stage))
    return instructions


def last_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the final (runtime) stage."""
    final = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == final]


def dockerfile_env() -> dict[str, str]:
    """The runtime stage's ENV, as the running container sees it."""
    env: dict[str, str] = {}
    for instruction in last_stage(dockerfile_instructions()):
        if instruction.keyword == "ENV":
            env.update(instruction.pairs())
    return env


def dockerfile_user() -> tuple[int, int]:
    """The runtime stage's numeric ``USER uid:gid``."""
    (user,) = [i.args for i in last_stage(dockerfile_instructions()) if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid)


def yaml_documents(path: Path) -> list[Any]:
    """The non-empty YAML documents of ``path``."""
    with path.open(encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes by kind (one object per kind)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml_documents(path):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


def compose() -> dict[str, Any]:
    """deploy/docker-compose.yml."""
    (doc,) = yaml_documents(DEPLOY / "docker-compose.yml")
    assert isinstance(doc, dict)
    return doc


def definitions() -> dict[str, Any]:
    """deploy/rabbitmq/definitions.json."""
    with (DEPLOY / "rabbitmq" / "definitions.json").open(encoding="utf-8") as file:
        doc = json.load(file)
    assert isinstance(doc, dict)
    return doc


def exported_metric_names() -> set[str]:
    """Every sample name the bridge's ``/metrics`` can show, from its own registry."""
    return Metrics().exported_names()


def metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (it must parse)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names
