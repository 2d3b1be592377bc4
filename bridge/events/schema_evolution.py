"""Find the breaking changes between two versions of the published JSON Schemas.

Approach
--------
A change is breaking when the new schema rejects a message the old one accepted, or
when it drops something consumers may rely on:

* a message (schema file) removed;
* a property removed, at any depth;
* a property newly required;
* a type narrowed: a JSON type the old schema accepted (outside an enum) that the new
  one does not (``integer`` counts as accepted by ``number``);
* an enum or const value removed that the new schema no longer accepts at all (a value
  dropped from an *open* enum, ``Literal[...] | str``, is still accepted as a string,
  so it is not breaking);
* an object closed to properties it did not declare, or a string pattern added or
  changed (a pattern's meaning cannot be compared, so any change counts).

Additive changes are not reported: a new message, a new optional property, a widened
type, a new enum value, a property no longer required.  Bounds (``maxItems``,
``minimum``...) and formats are not compared.

Each schema is compared as a tree after resolving its local ``$ref``s, and
``anyOf``/``oneOf`` branches are pooled: the accepted types, the enum values and the
object properties of all branches together.  The comparison is pure: two mappings of
file path to schema in, a sorted list of :class:`BreakingChange` out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "BreakingChange",
    "ChangeKind",
    "breaking_changes",
    "major_version",
    "schema_changes",
    "unapproved_changes",
]

_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_REF_PREFIX = "#/$defs/"


class ChangeKind(StrEnum):
    """The kinds of breaking change."""

    REMOVED_MESSAGE = "removed message"
    REMOVED_PROPERTY = "removed property"
    NEW_REQUIRED = "newly required"
    NARROWED_TYPE = "narrowed type"
    REMOVED_ENUM_VALUE = "removed enum value"
    CLOSED_OBJECT = "closed object"
    CHANGED_PATTERN = "changed pattern"


@dataclass(frozen=True, slots=True, order=True)
class BreakingChange:
    """One breaking change: in which file, where in the message, and what."""

    file: str
    #: Dotted location in the message: ``fields.Cause``, ``raw[]``, ``extra{}``.
    path: str
    kind: ChangeKind
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file} {self.path}" if self.path else self.file
        return f"{where}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


def major_version(version: str) -> int:
    """The major part of a ``major.minor.patch`` version.

    Raises:
        ValueError: ``version`` does not start with an integer.
    """
    return int(version.split(".", 1)[0])


def breaking_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[BreakingChange]:
    """Every breaking change from the schemas ``before`` to ``after`` (path -> schema)."""
    changes = [
        BreakingChange(path, "", ChangeKind.REMOVED_MESSAGE) for path in before if path not in after
    ]
    for path, old in before.items():
        if path in after:
            changes += [
                BreakingChange(path, where, kind, detail)
                for where, kind, detail in schema_changes(old, after[path])
            ]
    return sorted(changes)


def unapproved_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    before_version: str,
    after_version: str,
) -> list[BreakingChange]:
    """The breaking changes that ``after_version`` does not allow: all of them, unless its
    major version is higher than ``before_version``'s.

    Raises:
        ValueError: a version does not start with an integer.
    """
    if major_version(after_version) > major_version(before_version):
        return []
    return breaking_changes(before, after)


def schema_changes(before: Any, after: Any) -> list[tuple[str, ChangeKind, str]]:
    """The breaking changes from one schema to another as (path, kind, detail)."""
    return list(_compare(_Node(before, before), _Node(after, after), "", frozenset()))


@dataclass(frozen=True, slots=True)
class _Node:
    """A subschema and the root document its ``$ref``s resolve against."""

    schema: Any
    root: Any


@dataclass(slots=True)
class _Facets:
    """What a subschema accepts, pooled over its ``anyOf``/``oneOf`` branches."""

    open_types: set[str] = field(default_factory=set)
    values: list[Any] = field(default_factory=list)
    patterns: set[str] = field(default_factory=set)
    properties: dict[str, list[Any]] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    closed: bool = False
    extra: list[Any] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    prefix_items: list[list[Any]] = field(default_factory=list)
    refs: frozenset[str] = frozenset()


def _resolve(node: Any, root: Any, refs: set[str]) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith(_REF_PREFIX):
            break
        refs.add(ref)
        target = root.get("$defs", {}).get(ref.removeprefix(_REF_PREFIX), {})
        # Keywords beside a $ref apply too; a description changes nothing we compare.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(node: Any, root: Any, refs: set[str]) -> Iterator[dict[str, Any]]:
    node = _resolve(node, root, refs)
    if node is True or node == {}:
        yield {}
        return
    if not isinstance(node, dict):
        return  # `false` accepts nothing
    pooled = node.get("anyOf") or node.get("oneOf")
    all_of = node.get("allOf")
    if pooled:
        for branch in pooled:
            yield from _branches(branch, root, refs)
    elif all_of and len(all_of) == 1:
        yield from _branches(all_of[0], root, refs)
    else:
        yield node


def _types(branch: Mapping[str, Any]) -> set[str]:
    declared = branch.get("type")
    if declared is None:
        return set(_ALL_TYPES)
    return {declared} if isinstance(declared, str) else set(declared)


def _facets(node: _Node) -> _Facets:
    refs: set[str] = set()
    facets = _Facets()
    for branch in _branches(node.schema, node.root, refs):
        if "const" in branch or "enum" in branch:
            facets.values += [branch["const"]] if "const" in branch else list(branch["enum"])
        else:
            facets.open_types |= _types(branch)
        if "pattern" in branch:
            facets.patterns.add(branch["pattern"])
        for name, prop in branch.get("properties", {}).items():
            facets.properties.setdefault(name, []).append(prop)
        facets.required |= set(branch.get("required", ()))
        additional = branch.get("additionalProperties", True)
        if additional is False and "object" in _types(branch):
            facets.closed = True
        elif isinstance(additional, dict):
            facets.extra.append(additional)
        if isinstance(branch.get("items"), dict):
            facets.items.append(branch["items"])
        for index, item in enumerate(branch.get("prefixItems", ())):
            while len(facets.prefix_items) <= index:
                facets.prefix_items.append([])
            facets.prefix_items[index].append(item)
    facets.refs = frozenset(refs)
    return facets


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepts_type(types: set[str], json_type: str) -> bool:
    return json_type in types or (json_type == "integer" and "number" in types)


def _same_value(a: Any, b: Any) -> bool:
    # 1 == True in Python; a JSON enum tells them apart.
    return bool(a == b and _json_type(a) == _json_type(b))


def _pool(schemas: list[Any]) -> Any:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _compare(
    before: _Node, after: _Node, path: str, seen: frozenset[tuple[frozenset[str], ...]]
) -> Iterator[tuple[str, ChangeKind, str]]:
    old, new = _facets(before), _facets(after)
    # Recursive definitions: stop where the same pair of definitions was compared.
    key = (old.refs, new.refs)
    if (old.refs or new.refs) and key in seen:
        return
    seen = seen | {key}
    lost = {t for t in old.open_types if not _accepts_type(new.open_types, t)}
    if lost:
        yield path, ChangeKind.NARROWED_TYPE, "no longer accepts " + ", ".join(sorted(lost))
    for value in old.values:
        kept = any(_same_value(value, v) for v in new.values)
        if not kept and not _accepts_type(new.open_types, _json_type(value)):
            yield path, ChangeKind.REMOVED_ENUM_VALUE, repr(value)
    if new.patterns and new.patterns != old.patterns:
        yield path, ChangeKind.CHANGED_PATTERN, " | ".join(sorted(new.patterns))
    if new.closed and not old.closed:
        yield path, ChangeKind.CLOSED_OBJECT, "undeclared properties no longer allowed"
    for name in sorted(new.required - old.required):
        yield _child(path, name), ChangeKind.NEW_REQUIRED, ""
    for name, schemas in old.properties.items():
        if name not in new.properties:
            yield _child(path, name), ChangeKind.REMOVED_PROPERTY, ""
            continue
        yield from _compare(
            _Node(_pool(schemas), before.root),
            _Node(_pool(new.properties[name]), after.root),
            _child(path, name),
            seen,
        )
    if old.extra and new.extra:
        yield from _compare(
            _Node(_pool(old.extra), before.root),
            _Node(_pool(new.extra), after.root),
            f"{path}{{}}",
            seen,
        )
    if old.items and new.items:
        yield from _compare(
            _Node(_pool(old.items), before.root),
            _Node(_pool(new.items), after.root),
            f"{path}[]",
            seen,
        )
    for index, schemas in enumerate(old.prefix_items):
        where = f"{path}[{index}]"
        if index >= len(new.prefix_items):
            yield where, ChangeKind.REMOVED_PROPERTY, "tuple item removed"
            continue
        yield from _compare(
            _Node(_pool(schemas), before.root),
            _Node(_pool(new.prefix_items[index]), after.root),
            where,
            seen,
        )
