"""The published contract in the hands of consumers' own tools.

What a team does with ``schemas/`` is what this suite does, with the official tools
pinned in ``tools/contract/package.json`` (installed by ``npm ci --prefix
tools/contract``) and datamodel-code-generator from the dev dependencies:

* the AsyncAPI parser (what ``asyncapi validate`` runs) accepts ``asyncapi.yaml``, and
  modelina (what ``asyncapi generate models`` runs) makes a typed model of every
  message payload;
* ajv, JSON Schema 2020-12 in strict mode with ajv-formats and nothing else, loads every
  schema and accepts every message of the replayed captures under the schema
  ``index.json`` picks for it (as ``schemas/README.md`` tells consumers to);
* quicktype's TypeScript for a few events, and modelina's, compile with ``tsc --strict``;
  quicktype's Go for the same events compiles with ``go build``;
* datamodel-code-generator's pydantic models of those events load the same messages.

All the Node work runs in one process (``tools/contract/check.mjs``), once per session.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.cli.replay import render_capture
from bridge.publish.routing import Router
from bridge.service.render import Renderer
from tests.support.scripts import import_script

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
TOOLS = ROOT / "tools" / "contract"
CAPTURES = sorted((ROOT / "tests" / "fixtures" / "captures").glob("*.ami"))
#: Events whose generated code is compiled and loaded: typed lists, enums, a legacy
#: model, required fields, a list item and its completion.
EVENTS = ("Hangup", "Newchannel", "PeerStatus", "QueueMemberStatus", "PeerEntry", "FullyBooted")


@functools.cache
def replayed_bodies() -> tuple[dict[str, Any], ...]:
    """Every message body of the captures, as ``ami-bridge replay`` renders them."""
    bodies = []
    for path in CAPTURES:
        renderer = Renderer(Router("replay"))
        for rendered in render_capture(path.read_bytes(), renderer, 1_795_675_153.0):
            bodies.append(orjson.loads(rendered.message.body))
    return tuple(bodies)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the consumer tools"
    assert (TOOLS / "node_modules").is_dir(), "run: npm ci --prefix tools/contract"
    work = tmp_path_factory.mktemp("consumer-tools")
    messages = work / "messages.jsonl"
    messages.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in replayed_bodies()))
    result = subprocess.run(
        [node, str(TOOLS / "check.mjs"), str(SCHEMAS), str(messages), str(work), *EVENTS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_the_asyncapi_parser_accepts_the_document(report: dict[str, Any]) -> None:
    assert report["asyncapi"]["errors"] == []


def test_asyncapi_model_generation_types_every_message(report: dict[str, Any]) -> None:
    modelina = report["modelina"]

    # One model per message payload at least, and none of them `any`.
    assert modelina["models"] > len(json.loads((SCHEMAS / "index.json").read_text())["events"])
    assert modelina["untyped"] == []
    assert report["tsc"]["modelina"]["errors"] == []


def test_strict_ajv_loads_every_schema_and_accepts_every_replayed_message(
    report: dict[str, Any],
) -> None:
    ajv = report["ajv"]

    assert ajv["loadErrors"] == []
    assert (
        ajv["schemas"] == len([p for p in SCHEMAS.rglob("*.json") if "baseline" not in p.parts]) - 1
    )
    assert ajv["validated"] == len(replayed_bodies()) > 0
    assert ajv["invalid"] == []


def test_quicktype_typescript_compiles_with_tsc_strict(report: dict[str, Any]) -> None:
    assert report["tsc"]["quicktype"]["files"] == len(EVENTS)
    assert report["tsc"]["quicktype"]["errors"] == []


def test_quicktype_go_compiles(report: dict[str, Any], tmp_path: Path) -> None:
    go = shutil.which("go")
    assert go, "Go is needed to compile quicktype's Go (Debian: golang-go)"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GOCACHE": str(tmp_path / "cache"),
        "GOPATH": str(tmp_path / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",  # the generated code imports the standard library only
    }
    result = subprocess.run(
        [go, "build", "./..."],
        cwd=report["go"]["dir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert len(report["go"]["packages"]) == len(EVENTS)
    assert result.returncode == 0, result.stderr


def test_datamodel_code_generator_models_load_the_replayed_messages(tmp_path: Path) -> None:
    index = json.loads((SCHEMAS / "index.json").read_text(encoding="utf-8"))
    bodies = [b for b in replayed_bodies() if b["kind"] == "event"]
    loaded = 0
    for event in EVENTS:
        out = tmp_path / f"{event.lower()}_models.py"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "datamodel-codegen"),
                "--input",
                str(SCHEMAS / index["events"][event.lower()]),
                "--input-file-type",
                "jsonschema",
                "--output-model-type",
                "pydantic_v2.BaseModel",
                "--formatters",
                "ruff-format",
                "--output",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        module = import_script(out, f"consumer_{out.stem}")
        # The root model, named after the schema's title ("PeerstatusMessage"...).
        (model,) = [
            value
            for name, value in vars(module).items()
            if name.lower() == f"{event.lower()}message"
        ]
        for body in bodies:
            if body["event"].lower() == event.lower():
                model.model_validate(body)
                loaded += 1
    assert loaded > len(EVENTS)
