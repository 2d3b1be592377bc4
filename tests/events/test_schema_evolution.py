"""Schema evolution: breaking changes are found, and the contract makes none unannounced.

The unit tests feed :func:`breaking_changes` hand-made schema pairs; the contract test
compares the committed schemas with ``schemas/baseline/`` (the 1.0.0 schemas) and
fails on a breaking change unless ``SCHEMA_VERSION``'s major version was bumped.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.events import SCHEMA_VERSION
from bridge.events.schema_evolution import (
    BreakingChange,
    ChangeKind,
    breaking_changes,
    major_version,
    schema_changes,
    unapproved_changes,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BASELINE = SCHEMAS / "baseline"

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
OPTIONAL_INT = {"anyOf": [INTEGER, {"type": "null"}]}
OPEN_ENUM = {"anyOf": [{"enum": ["Up", "Down"], "type": "string"}, STRING]}


def message(fields: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A small message schema in the shape of the generated ones: fields under $defs."""
    model: dict[str, Any] = {"type": "object", "properties": fields}
    if required:
        model["required"] = required
    return {
        "$defs": {"Event": model},
        "type": "object",
        "required": ["kind", "fields"],
        "properties": {"kind": {"const": "event"}, "fields": {"$ref": "#/$defs/Event"}},
    }


def kinds(before: Any, after: Any) -> list[tuple[str, ChangeKind]]:
    return [(path, kind) for path, kind, _ in schema_changes(before, after)]


# -- breaking changes are detected --------------------------------------------------------


def test_identical_schemas_have_no_changes() -> None:
    schema = message({"Cause": INTEGER, "State": OPEN_ENUM}, ["Cause"])
    assert schema_changes(schema, copy.deepcopy(schema)) == []


def test_a_removed_field_is_breaking() -> None:
    before = message({"Cause": INTEGER, "Channel": STRING})
    after = message({"Cause": INTEGER})
    assert kinds(before, after) == [("fields.Channel", ChangeKind.REMOVED_PROPERTY)]


def test_a_removed_envelope_key_is_breaking() -> None:
    before = message({})
    after = copy.deepcopy(before)
    del after["properties"]["kind"]
    assert kinds(before, after) == [("kind", ChangeKind.REMOVED_PROPERTY)]


@pytest.mark.parametrize(
    ("old", "new", "lost"),
    [
        (STRING, INTEGER, "string"),
        (OPTIONAL_INT, INTEGER, "null"),
        ({"type": "number"}, INTEGER, "number"),
        ({"anyOf": [STRING, INTEGER]}, STRING, "integer"),
        ({}, STRING, "array"),
        (OPEN_ENUM, {"enum": ["Up", "Down"], "type": "string"}, "string"),
    ],
    ids=["string-to-int", "drop-null", "number-to-int", "union-to-one", "any-to-one", "close-enum"],
)
def test_a_narrowed_type_is_breaking(old: Any, new: Any, lost: str) -> None:
    changes = schema_changes(message({"F": old}), message({"F": new}))
    assert [(p, k) for p, k, _ in changes] == [("fields.F", ChangeKind.NARROWED_TYPE)]
    assert lost in changes[0][2]


def test_a_removed_value_of_a_closed_enum_is_breaking() -> None:
    before = message({"Mode": {"enum": ["none", "talker", "single"], "type": "string"}})
    after = message({"Mode": {"enum": ["none", "talker"], "type": "string"}})
    assert schema_changes(before, after) == [
        ("fields.Mode", ChangeKind.REMOVED_ENUM_VALUE, "'single'")
    ]


def test_a_changed_const_is_breaking() -> None:
    before = message({})
    after = copy.deepcopy(before)
    after["properties"]["kind"] = {"const": "status"}
    assert kinds(before, after) == [("kind", ChangeKind.REMOVED_ENUM_VALUE)]


def test_a_new_required_field_is_breaking() -> None:
    before = message({"Cause": INTEGER})
    after = message({"Cause": INTEGER, "Reason": STRING}, ["Reason"])
    assert kinds(before, after) == [("fields.Reason", ChangeKind.NEW_REQUIRED)]


def test_an_existing_field_made_required_is_breaking() -> None:
    before = message({"Cause": INTEGER})
    after = message({"Cause": INTEGER}, ["Cause"])
    assert kinds(before, after) == [("fields.Cause", ChangeKind.NEW_REQUIRED)]


def test_a_removed_message_is_breaking() -> None:
    schema = message({})
    changes = breaking_changes(
        {"events/A.json": schema, "events/B.json": schema}, {"events/A.json": schema}
    )
    assert changes == [BreakingChange("events/B.json", "", ChangeKind.REMOVED_MESSAGE)]
    assert str(changes[0]) == "events/B.json: removed message"


def test_closing_an_object_is_breaking() -> None:
    before = message({"Cause": INTEGER})
    after = copy.deepcopy(before)
    after["$defs"]["Event"]["additionalProperties"] = False
    assert kinds(before, after) == [("fields", ChangeKind.CLOSED_OBJECT)]


def test_an_added_or_changed_pattern_is_breaking() -> None:
    before = message({"Name": STRING})
    after = message({"Name": {"type": "string", "pattern": "^[Aa]$"}})
    assert kinds(before, after) == [("fields.Name", ChangeKind.CHANGED_PATTERN)]
    again = message({"Name": {"type": "string", "pattern": "^[Bb]$"}})
    assert kinds(after, again) == [("fields.Name", ChangeKind.CHANGED_PATTERN)]


def test_changes_inside_arrays_and_maps_are_found() -> None:
    pair = {"type": "array", "prefixItems": [STRING, STRING]}
    before = message(
        {
            "raw": {"type": "array", "items": pair},
            "extra": {"type": "object", "additionalProperties": STRING},
        }
    )
    after = message(
        {
            "raw": {"type": "array", "items": {"type": "array", "prefixItems": [STRING]}},
            "extra": {"type": "object", "additionalProperties": INTEGER},
        }
    )
    assert kinds(before, after) == [
        ("fields.raw[][1]", ChangeKind.REMOVED_PROPERTY),
        ("fields.extra{}", ChangeKind.NARROWED_TYPE),
    ]


def test_every_change_is_reported_at_once_in_order() -> None:
    before = {"a.json": message({"X": STRING, "Y": STRING}), "b.json": message({})}
    after = {"a.json": message({"X": INTEGER})}
    assert [(c.file, c.path, c.kind) for c in breaking_changes(before, after)] == [
        ("a.json", "fields.X", ChangeKind.NARROWED_TYPE),
        ("a.json", "fields.Y", ChangeKind.REMOVED_PROPERTY),
        ("b.json", "", ChangeKind.REMOVED_MESSAGE),
    ]


def test_recursive_definitions_terminate() -> None:
    node = {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
    schema = {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}
    assert schema_changes(schema, copy.deepcopy(schema)) == []


# -- additive changes are not -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (message({"Cause": INTEGER}), message({"Cause": INTEGER, "TechCause": OPTIONAL_INT})),
        (message({"Cause": INTEGER}), message({"Cause": {"type": "number"}})),
        (message({"Cause": INTEGER}), message({"Cause": OPTIONAL_INT})),
        (message({"Cause": STRING}), message({"Cause": {"type": ["string", "integer"]}})),
        (
            message({"M": {"enum": ["a"], "type": "string"}}),
            message({"M": {"enum": ["a", "b"], "type": "string"}}),
        ),
        (
            message({"State": OPEN_ENUM}),
            message({"State": {"anyOf": [{"enum": ["Up"], "type": "string"}, STRING]}}),
        ),
        (message({"M": {"enum": ["a"], "type": "string"}}), message({"M": STRING})),
        (message({"Cause": INTEGER}, ["Cause"]), message({"Cause": INTEGER})),
        (message({"Name": {"type": "string", "pattern": "^a$"}}), message({"Name": STRING})),
        (
            message({"Cause": {"type": "integer", "description": "old"}}),
            message({"Cause": {"type": "integer", "description": "new"}}),
        ),
    ],
    ids=[
        "new-optional-field",
        "int-to-number",
        "add-null",
        "union",
        "new-enum-value",
        "open-enum-value-dropped",
        "enum-to-string",
        "no-longer-required",
        "pattern-dropped",
        "description",
    ],
)
def test_an_additive_change_is_not_breaking(old: Any, new: Any) -> None:
    assert schema_changes(old, new) == []


def test_a_new_message_is_not_breaking() -> None:
    schema = message({})
    assert breaking_changes({"a.json": schema}, {"a.json": schema, "b.json": schema}) == []


# -- the major version gate ---------------------------------------------------------------


def test_breaking_changes_need_a_major_bump() -> None:
    before = {"a.json": message({"X": STRING})}
    after = {"a.json": message({})}

    assert unapproved_changes(before, after, before_version="1.0.0", after_version="1.4.0")
    assert not unapproved_changes(before, after, before_version="1.0.0", after_version="2.0.0")
    assert major_version("12.3.4") == 12


# -- the committed contract against its baseline ------------------------------------------


def load_schemas(folder: Path) -> dict[str, Any]:
    """Every message schema under ``folder`` by relative path (no index, no baseline)."""
    schemas = {}
    for path in sorted(folder.rglob("*.json")):
        relative = path.relative_to(folder)
        if path.name != "index.json" and relative.parts[0] != BASELINE.name:
            schemas[relative.as_posix()] = json.loads(path.read_text(encoding="utf-8"))
    return schemas


def test_the_baseline_holds_a_whole_contract() -> None:
    baseline = load_schemas(BASELINE)
    index = json.loads((BASELINE / "index.json").read_text(encoding="utf-8"))

    assert {"envelope.json", "generic.json", "invalid.json"} <= set(baseline)
    assert set(index["events"].values()) | set(index["status"].values()) <= set(baseline)
    assert major_version(SCHEMA_VERSION) >= major_version(index["schema_version"])


def test_the_contract_has_no_breaking_change_without_a_major_bump() -> None:
    baseline_version = json.loads((BASELINE / "index.json").read_text())["schema_version"]
    changes = unapproved_changes(
        load_schemas(BASELINE),
        load_schemas(SCHEMAS),
        before_version=baseline_version,
        after_version=SCHEMA_VERSION,
    )
    assert not changes, (
        f"breaking changes since the {baseline_version} baseline; make the change additive, "
        "or bump the major SCHEMA_VERSION and run `ami-bridge schemas --refresh-baseline` "
        "(see schemas/README.md):\n" + "\n".join(map(str, changes))
    )


def test_a_field_removed_from_the_baseline_is_caught() -> None:
    # The baseline comparison above finds real changes in real schemas.
    baseline = load_schemas(BASELINE)
    broken = copy.deepcopy(baseline)
    del broken["events/Hangup.json"]["$defs"]["Hangup"]["properties"]["Cause"]
    assert breaking_changes(baseline, broken) == [
        BreakingChange("events/Hangup.json", "fields.Cause", ChangeKind.REMOVED_PROPERTY)
    ]
