"""Generate ``bridge/events/generated.py``: one pydantic model per documented AMI event.

Usage::

    python scripts/generate_models.py          # rewrite bridge/events/generated.py
    python scripts/generate_models.py --check  # exit 1 when the file is out of date

Approach
--------
The input is ``bridge/events/catalog.json``, the events that current Asterisk documents
(names, privilege classes, field lists with the channel and bridge snapshot groups
already expanded, enum values).  The catalog has no field types, so the typing rules
live here, as tables, each entry checked against the Asterisk source (the format string
that writes the header) or the Asterisk 22 captures in ``tests/fixtures/captures``:

* ``INT_FIELDS``: headers written with ``%d``/``%u``/``%ld``; everything else is text.
* enum fields become open enums (``Literal[...] | str``), see ``bridge/events/base.py``.
* ``REQUIRED``: the few headers an event cannot lack; all others are optional because
  Asterisk leaves many out (snapshots of internal channels, unset options).
* ``WIRE_FIELDS``: headers that Asterisk 22 sends but does not document.

Snapshot groups are found again in the expanded field lists (a prefix ``P`` for which
every ``P<Name>`` of the group is present) and become mixin classes such as
``DestChannelSnapshot``, so each group is written once.  The 1.4-era events and the
fields that older versions sent live in ``bridge/events/legacy.py``, written by hand.

Events named in both inputs take the documented name, class and fields, plus the
headers only the code writes; events only the code raises take their name, class and
headers from it.  Names modelled in ``bridge/events/legacy.py`` are left to it.

The output is deterministic and already in ``ruff format`` style, so the committed file
can be compared with a fresh run (``tests/events/test_generated.py`` does).
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CATALOG_PATH = ROOT / "bridge" / "events" / "catalog.json"
EMITTED_PATH = ROOT / "bridge" / "events" / "emitted.json"
LEGACY_PATH = ROOT / "bridge" / "events" / "legacy.py"
OUTPUT_PATH = ROOT / "bridge" / "events" / "generated.py"
LINE_LENGTH = 100

# -- typing rules -----------------------------------------------------------------------

#: Headers Asterisk formats as integers.  Checked against the format strings in the
#: source and, where they occur, the Asterisk 22 captures.
INT_FIELDS = frozenset(
    {
        # Hangup and PeerStatus (main/manager_channels.c, main/stasis_endpoints.c)
        "Cause",
        "TechCause",
        "Port",
        "Time",
        # FullyBooted: seconds since start and since the last reload
        "Uptime",
        "LastReload",
        # list responses (astman_send_list_complete) and StatusComplete
        "ListItems",
        "Items",
        "Total",
        # queues (apps/app_queue.c)
        "Count",
        "Position",
        "OriginalPosition",
        "HoldTime",
        "Holdtime",
        "TalkTime",
        "RingTime",
        "Penalty",
        "CallsTaken",
        "LastCall",
        "LastPause",
        "LoginTime",
        "Wrapuptime",
        "Max",
        "Calls",
        "Completed",
        "Abandoned",
        "ServiceLevel",
        "Weight",
        # agents (apps/app_agent_pool.c)
        "Logintime",
        # channel status and CDRs
        "Seconds",
        "TimeToHangup",
        "Duration",
        "DurationMs",
        "BillableSeconds",
        # parking (res/parking/parking_manager.c: %u and %lu)
        "ParkingSpace",
        "ParkingTimeout",
        "ParkingDuration",
        # mailboxes (main/manager_mwi.c, MWIGet)
        "New",
        "Old",
        "NewMessages",
        "OldMessages",
        # FAXStats (res/res_fax.c)
        "CurrentSessions",
        "ReservedSessions",
        "TransmitAttempts",
        "ReceiveAttempts",
        "CompletedFAXes",
        "FailedFAXes",
    }
)
#: Snapshot headers that are integers under any prefix (``DestChannelState``...).
INT_SUFFIXES = ("ChannelState", "Priority", "BridgeNumChannels")
#: (event, field) pairs that break the rules above.
TEXT_EXCEPTIONS = frozenset(
    {
        # CoreShowChannel writes the duration as HH:MM:SS.
        ("CoreShowChannel", "Duration"),
    }
)

#: Headers an event cannot lack, so a message without them is Invalid.  Kept small on
#: purpose; the catalog's own ``required_fields`` are added to these.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    # The point of the event; written unconditionally ("Cause: %d") since 1.2.
    "Hangup": ("Cause",),
    # Both the UserEvent action and the UserEvent() application write it first.
    "UserEvent": ("UserEvent",),
}

#: Headers that Asterisk 22 sends but does not document (seen in the captures).
WIRE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "CEL": ("Channel",),
    "QueueParams": ("Queue", "ServiceLevel", "Weight"),
}
#: Every ``*Complete`` event of a list response carries these (astman_send_list_complete).
LIST_COMPLETE_FIELDS = ("EventList", "ListItems")

#: Events whose unknown headers are payload, not drift.
PAYLOAD_EVENTS = frozenset({"UserEvent"})

#: Privilege classes the docs get wrong: EVENT_FLAG_CLASS is no flag; the code sends
#: ChannelTalkingStart/Stop with EVENT_FLAG_CALL (main/stasis_channels.c).
PRIVILEGE_OVERRIDES: Mapping[str, str] = {
    "ChannelTalkingStart": "call",
    "ChannelTalkingStop": "call",
}

# -- snapshot groups (doc/appdocsxml.xslt) ----------------------------------------------
# Descriptions hold ``{of}``: empty, or " of the <Prefix> channel" for a prefixed group.

CHANNEL_SNAPSHOT: tuple[tuple[str, str], ...] = (
    ("Channel", "Channel name{of}."),
    ("ChannelState", "Numeric state{of}, related to ChannelStateDesc."),
    ("ChannelStateDesc", "State name{of}; may be empty."),
    ("CallerIDNum", "Caller ID number{of}; `<unknown>` when empty."),
    ("CallerIDName", "Caller ID name{of}, C-escaped; `<unknown>` when empty."),
    ("ConnectedLineNum", "Connected line number{of}; `<unknown>` when empty."),
    ("ConnectedLineName", "Connected line name{of}, C-escaped; `<unknown>` when empty."),
    ("Language", "Language{of}."),
    ("AccountCode", "Account code{of}."),
    ("Context", "Dialplan context{of}."),
    ("Exten", "Dialplan extension{of}."),
    ("Priority", "Dialplan priority{of}."),
    ("Uniqueid", "Unique id{of}."),
    ("Linkedid", "Unique id of the oldest channel in the call{of}."),
)
#: Sent after the snapshot only when set (18.25, 20.10, 21.5, 22.0 and later).
CHANNEL_SNAPSHOT_WIRE: tuple[tuple[str, str], ...] = (
    ("Tenantid", "Tenant id{of}; sent only when set."),
)
BRIDGE_SNAPSHOT: tuple[tuple[str, str], ...] = (
    ("BridgeUniqueid", "Unique id{of}."),
    ("BridgeType", "Bridge type{of}."),
    ("BridgeTechnology", "Bridge technology{of}."),
    ("BridgeCreator", "Creator{of}; `<unknown>` when empty."),
    ("BridgeName", "Name{of}; `<unknown>` when empty."),
    ("BridgeNumChannels", "Number of channels{of}."),
    ("BridgeVideoSourceMode", "Video source mode{of}."),
    ("BridgeVideoSource", "Video source{of}; sent only with a mode other than none."),
)

#: Descriptions of common headers outside the snapshots.
FIELD_DOCS: Mapping[str, str] = {
    "Cause": "Cause code; for Hangup the Q.850 cause, whose text is in Cause-txt.",
    "Cause-txt": "Text of the hangup cause code.",
    "TechCause": "Technology-specific cause (the last SIP status for chan_pjsip).",
    "EventList": "List marker: `Complete` on the event that ends a list response.",
    "ListItems": "Number of items the list response held.",
    "Uptime": "Seconds since Asterisk started.",
    "LastReload": "Seconds since the last reload.",
    "UserEvent": "Name of the user event.",
    "Extension": "Dialplan extension; a deprecated copy of Exten.",
    "DurationMs": "Duration in milliseconds.",
}


# -- catalog model ----------------------------------------------------------------------


@dataclass
class FieldSpec:
    alias: str
    annotation: str
    required: bool = False
    description: str | None = None

    @property
    def attribute(self) -> str:
        return python_name(self.alias)


@dataclass
class GroupSpec:
    """One snapshot group with its prefix: a mixin class."""

    kind: str  # "Channel" or "Bridge"
    prefix: str
    fields: list[FieldSpec]

    @property
    def class_name(self) -> str:
        return f"{self.prefix}{self.kind}Snapshot"


@dataclass
class EventSpec:
    name: str
    privilege_class: str | None
    since: list[str]
    sources: list[str]
    response_to: list[str]
    #: The class the code raises it with as an unsolicited event; None for list items.
    live_class: str | None = None
    groups: list[GroupSpec] = field(default_factory=list)
    fields: list[FieldSpec] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        # CapWords without separators: ``AOC-D`` -> ``AOCD`` (the title keeps the name).
        return python_name(re.sub(r"\W", "", self.name))


def python_name(alias: str) -> str:
    """A valid identifier for an AMI name: ``Cause-txt`` -> ``Cause_txt``."""
    name = re.sub(r"\W", "_", alias)
    if name[0].isdigit():
        name = f"field_{name}"
    if keyword.iskeyword(name):
        name = f"{name}_"
    return name


class EnumNames:
    """Names one ``Literal`` alias per enum: ``<Field>Value`` when every event that has
    the field documents the same values, ``<Event><Field>Value`` when they differ."""

    def __init__(self, catalog: Mapping[str, Mapping[str, Any]]) -> None:
        value_sets: dict[str, set[tuple[str, ...]]] = {}
        for entry in catalog.values():
            for alias, values in entry["enums"].items():
                value_sets.setdefault(alias, set()).add(tuple(values))
        self.shared = {alias for alias, sets in value_sets.items() if len(sets) == 1}
        self.values_by_name: dict[str, tuple[str, ...]] = {}

    def name_for(self, base: str, values: tuple[str, ...], owner: str) -> str:
        shared = base in self.shared
        name = f"{python_name(base if shared else owner + base)}Value"
        if self.values_by_name.setdefault(name, values) != values:
            raise ValueError(f"enum alias {name} would stand for two value sets")
        return name


class Emitted:
    """What the code writes (``emitted.json``), looked up without regard to case."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.events: dict[str, Mapping[str, Any]] = {
            name.lower(): entry for name, entry in data["events"].items()
        }
        self.names = {name.lower(): name for name in data["events"]}
        self.snapshots: Mapping[str, Mapping[str, Any]] = data["snapshots"]

    def fields(self, event: str) -> Mapping[str, Mapping[str, Any]]:
        entry = self.events.get(event.lower())
        return entry["fields"] if entry else {}

    def code_type(self, event: str, alias: str) -> str | None:
        """``int`` or ``text`` as the code writes ``alias`` in ``event``; None if unseen."""
        for name, facts in self.fields(event).items():
            if name.lower() == alias.lower():
                return str(facts["type"])
        return None

    def snapshot_type(self, kind: str, base: str) -> str | None:
        facts = self.snapshots.get(kind, {}).get("fields", {}).get(base)
        return str(facts["type"]) if facts else None


def is_int(event: str, alias: str, emitted: Emitted, snapshot: tuple[str, str] | None) -> bool:
    """Whether ``alias`` of ``event`` is typed as an integer (see the module's docs)."""
    if (event, alias) in TEXT_EXCEPTIONS:
        return False
    if snapshot is not None:
        from_builder = emitted.snapshot_type(*snapshot)
        if from_builder is not None:
            return from_builder == "int"
    from_code = emitted.code_type(event, alias)
    if from_code is not None:
        return from_code == "int"
    return alias in INT_FIELDS or alias.endswith(INT_SUFFIXES)


def find_groups(fields: Sequence[str]) -> list[tuple[str, str]]:
    """The (kind, prefix) of every complete snapshot group in an expanded field list."""
    present = set(fields)
    found: list[tuple[str, str]] = []
    for kind, group, anchor in (
        ("Channel", CHANNEL_SNAPSHOT, "Linkedid"),
        ("Bridge", BRIDGE_SNAPSHOT, "BridgeUniqueid"),
    ):
        for name in fields:
            if not name.endswith(anchor):
                continue
            prefix = name[: -len(anchor)]
            if all(prefix + base in present for base, _ in group):
                found.append((kind, prefix))
    return found


@dataclass
class TypingRules:
    """Everything the typing of one field depends on, beyond its event and name."""

    enums: EnumNames
    emitted: Emitted


def annotation_for(
    event: str,
    alias: str,
    enum_values: Sequence[str] | None,
    rules: TypingRules,
    base: str,
    snapshot: tuple[str, str] | None = None,
) -> str:
    if enum_values is not None:
        # Documented values win over an integer conversion in the code: the docs list
        # codes such as QueueMemberStatus's Status ("0" to "8") as values to match.
        if alias in INT_FIELDS:
            raise ValueError(f"{event}.{alias} is both an enum and an integer")
        return f"{rules.enums.name_for(base, tuple(enum_values), event)} | str"
    return "int" if is_int(event, alias, rules.emitted, snapshot) else "str"


def build_group(
    kind: str, prefix: str, entry: Mapping[str, Any], event: str, rules: TypingRules
) -> GroupSpec:
    group = CHANNEL_SNAPSHOT + CHANNEL_SNAPSHOT_WIRE if kind == "Channel" else BRIDGE_SNAPSHOT
    of = f" of the {prefix} {kind.lower()}" if prefix else ""
    specs = []
    for base, doc in group:
        alias = prefix + base
        values = entry["enums"].get(alias)
        annotation = annotation_for(event, alias, values, rules, base, (kind, base))
        specs.append(FieldSpec(alias, annotation, description=doc.format(of=of)))
    return GroupSpec(kind, prefix, specs)


#: Header names the code writes that are not fields of their own: the parser folds
#: ``ChanVariable`` headers, and a name with other characters is a format's artefact.
_FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def code_only_fields(name: str, known: Sequence[str], emitted: Emitted) -> list[str]:
    """Headers the code writes in ``name`` that ``known`` lacks (compared in any case)."""
    taken = {alias.lower() for alias in known}
    extra = []
    for alias in emitted.fields(name):
        if alias.lower() in taken or not _FIELD_NAME_RE.match(alias):
            continue
        if alias.lower().endswith("chanvariable"):
            continue
        taken.add(alias.lower())
        extra.append(alias)
    return extra


def live_class_of(name: str, emitted: Emitted) -> str | None:
    """The class ``name`` is raised with unsolicited (``manager_event`` and the like with
    an ``EVENT_FLAG``), or None when the code only writes it in reply to an action."""
    if name in PRIVILEGE_OVERRIDES:
        return PRIVILEGE_OVERRIDES[name]
    entry = emitted.events.get(name.lower())
    classes = entry["classes"] if entry else []
    return str(classes[0]) if classes else None


def build_event(name: str, entry: Mapping[str, Any], rules: TypingRules) -> EventSpec:
    classes = entry["classes"]
    spec = EventSpec(
        name=name,
        privilege_class=PRIVILEGE_OVERRIDES.get(name, classes[0] if classes else None),
        since=list(entry["since"]),
        sources=list(entry["source_files"]),
        response_to=list(entry.get("response_to_actions", [])),
        live_class=live_class_of(name, rules.emitted),
    )
    in_groups: set[str] = set()
    for kind, prefix in find_groups(entry["fields"]):
        spec.groups.append(build_group(kind, prefix, entry, name, rules))
        snapshot = CHANNEL_SNAPSHOT if kind == "Channel" else BRIDGE_SNAPSHOT
        in_groups.update(prefix + base for base, _ in snapshot)

    required = set(REQUIRED.get(name, ())) | set(entry.get("required_fields", ()))
    names = list(entry["fields"]) + list(WIRE_FIELDS.get(name, ()))
    if name.endswith("Complete") and (spec.response_to or "list_complete" in entry["how"]):
        names += LIST_COMPLETE_FIELDS
    names += code_only_fields(name, [*names, *in_groups, "ActionID"], rules.emitted)
    seen: set[str] = set()
    for alias in names:
        if alias in in_groups or alias in seen or alias == "ActionID":
            continue  # ActionID is declared once, on the base model
        seen.add(alias)
        values = entry["enums"].get(alias)
        annotation = annotation_for(name, alias, values, rules, alias)
        spec.fields.append(FieldSpec(alias, annotation, alias in required, FIELD_DOCS.get(alias)))
    missing = required - seen
    if missing:
        raise ValueError(f"{name}: required fields not in the catalog: {sorted(missing)}")
    return spec


def code_entry(name: str, emitted: Emitted) -> dict[str, Any]:
    """A catalog entry for an event only the code raises (no fields listed: they all
    come from the code, see :func:`code_only_fields`)."""
    facts = emitted.events[name.lower()]
    return {
        "classes": facts["classes"],
        "fields": [],
        "enums": {},
        "since": [],
        "source_files": facts["files"],
        "how": facts["how"],
    }


# -- rendering --------------------------------------------------------------------------


def q(text: str) -> str:
    """A double-quoted Python string literal."""
    return json.dumps(text, ensure_ascii=False)


def render_assignment(target: str, call: str, args: Sequence[str], indent: str) -> list[str]:
    """``target = call(args)`` wrapped the way ``ruff format`` wraps it."""
    one_line = f"{indent}{target} = {call}({', '.join(args)})"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    inner = f"{indent}    {', '.join(args)}"
    if len(inner) <= LINE_LENGTH:
        return [f"{indent}{target} = {call}(", inner, f"{indent})"]
    return [f"{indent}{target} = {call}(", *(f"{indent}    {a}," for a in args), f"{indent})"]


def render_field(spec: FieldSpec) -> list[str]:
    annotation = spec.annotation if spec.required else f"{spec.annotation} | None"
    target = f"{spec.attribute}: {annotation}"
    args = [] if spec.required else ["None"]
    if spec.attribute != spec.alias:
        args.append(f"alias={q(spec.alias)}")
    if spec.description:
        args.append(f"description={q(spec.description)}")
    if not args:
        return [f"    {target}"]
    if args == ["None"]:
        return [f"    {target} = None"]
    return render_assignment(target, "Field", args, "    ")


def render_tuple(target: str, items: Sequence[str], indent: str) -> list[str]:
    if not items:
        return [f"{indent}{target} = ()"]
    one_line = f"{indent}{target} = ({', '.join(q(i) for i in items)},)"
    if len(items) == 1 and len(one_line) <= LINE_LENGTH:
        return [one_line]
    one_line = f"{indent}{target} = ({', '.join(q(i) for i in items)})"
    if len(items) > 1 and len(one_line) <= LINE_LENGTH:
        return [one_line]
    return [f"{indent}{target} = (", *(f"{indent}    {q(i)}," for i in items), f"{indent})"]


def render_literal(name: str, values: Sequence[str]) -> list[str]:
    if len(values) == 1:
        return [f"{name} = Literal[{q(values[0])}]"]
    return [f"{name} = Literal[", *(f"    {q(v)}," for v in values), "]"]


def render_class_line(name: str, bases: Sequence[str]) -> list[str]:
    one_line = f"class {name}({', '.join(bases)}):"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    inner = f"    {', '.join(bases)}"
    if len(inner) <= LINE_LENGTH:
        return [f"class {name}(", inner, "):"]
    return [f"class {name}(", *(f"    {b}," for b in bases), "):"]


def render_group(group: GroupSpec) -> list[str]:
    prefix = f"``{group.prefix}``-prefixed " if group.prefix else ""
    lines = [
        f"class {group.class_name}(AmiEvent):",
        f'    """The {prefix}{group.kind.lower()} snapshot headers."""',
        "",
    ]
    for spec in group.fields:
        lines += render_field(spec)
    return lines


def render_event(spec: EventSpec) -> list[str]:
    bases = [g.class_name for g in spec.groups] or ["AmiEvent"]
    facts = [f"class ``{spec.privilege_class}``" if spec.privilege_class else "no class"]
    if spec.since:
        facts.append(f"since {', '.join(spec.since)}")
    if spec.response_to:
        facts.append(f"answers {', '.join(spec.response_to)}")
    facts.append(f"raised in {', '.join(spec.sources)}")
    lines = [
        *render_class_line(spec.class_name, bases),
        f'    """AMI event ``{spec.name}``: {"; ".join(facts)}."""',
        "",
    ]
    if spec.class_name != spec.name:
        lines.append(f"    model_config = ConfigDict(title={q(spec.name)})")
    lines.append(f"    event_name: ClassVar[str] = {q(spec.name)}")
    privilege = q(spec.privilege_class) if spec.privilege_class else "None"
    lines.append(f"    privilege_class: ClassVar[str | None] = {privilege}")
    if spec.live_class is not None:
        lines.append(f"    live_class: ClassVar[str | None] = {q(spec.live_class)}")
    lines += render_tuple("since: ClassVar[tuple[str, ...]]", spec.since, "    ")
    if spec.response_to:
        lines += render_tuple("response_to: ClassVar[tuple[str, ...]]", spec.response_to, "    ")
    if spec.name in PAYLOAD_EVENTS:
        lines.append("    payload_extras: ClassVar[bool] = True")
    if spec.fields:
        lines.append("")
    for field_spec in spec.fields:
        lines += render_field(field_spec)
    return lines


HEADER = '''\
"""Typed models of the AMI events that Asterisk documents, one class per event.

Generated by ``scripts/generate_models.py`` from ``bridge/events/catalog.json``: do not
edit by hand.  The typing rules and their reasons are in the generator; the events and
fields of older Asterisk versions are in ``bridge/events/legacy.py``.
"""

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from bridge.events.base import AmiEvent
'''


def merged_catalog(
    catalog: Mapping[str, Mapping[str, Any]], emitted: Emitted, legacy_names: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """The documented events plus those only the code raises, minus the legacy ones."""
    merged: dict[str, dict[str, Any]] = {}
    documented = {name.lower() for name in catalog}
    for name, entry in catalog.items():
        code = emitted.events.get(name.lower(), {})
        merged[name] = {**entry, "how": code.get("how", [])}
    for lower, name in emitted.names.items():
        if lower not in documented and lower not in legacy_names:
            merged[name] = code_entry(name, emitted)
    return merged


def legacy_event_names(path: Path = LEGACY_PATH) -> frozenset[str]:
    """Lower-cased names of the hand-written models that replace a generated one."""
    text = path.read_text(encoding="utf-8")
    return frozenset(
        n.lower() for n in re.findall(r'event_name: ClassVar\[str\] = "([^"]+)"', text)
    )


def render(catalog: Mapping[str, Mapping[str, Any]], emitted_data: Mapping[str, Any]) -> str:
    """The source of ``generated.py`` for ``catalog`` and ``emitted`` (deterministic).

    Raises:
        ValueError: the catalog breaks an assumption of the typing rules (a field both
            enum and integer, a required field the event does not have...).
    """
    emitted = Emitted(emitted_data)
    full = merged_catalog(catalog, emitted, legacy_event_names())
    rules = TypingRules(EnumNames(full), emitted)
    enums = rules.enums
    events = [build_event(name, full[name], rules) for name in sorted(full)]
    groups: dict[str, GroupSpec] = {}
    for event in events:
        for group in event.groups:
            groups.setdefault(group.class_name, group)
    class_names = [e.class_name for e in events] + list(groups)
    if len(set(class_names)) != len(class_names):
        raise ValueError("two events map to the same class name")

    out = HEADER.splitlines()
    out += ["", "# -- documented values of enum fields (open: other strings are accepted) --"]
    for name in sorted(enums.values_by_name):
        out += ["", *render_literal(name, enums.values_by_name[name])]
    out += ["", "", "# -- snapshot groups --"]
    for name in sorted(groups):
        out += ["", "", *render_group(groups[name])]
    out += ["", "", "# -- events --"]
    for event in events:
        out += ["", "", *render_event(event)]
    out += ["", "", "MODELS: tuple[type[AmiEvent], ...] = ("]
    out += [f"    {e.class_name}," for e in events]
    out += [")", ""]
    return "\n".join(out)


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        catalog: dict[str, Any] = json.load(handle)
    return catalog


def load_emitted(path: Path = EMITTED_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        emitted: dict[str, Any] = json.load(handle)
    return emitted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render(load_catalog(), load_emitted())
    if args.check:
        current = OUTPUT_PATH.read_text(encoding="utf-8") if OUTPUT_PATH.exists() else ""
        if current != text:
            print(f"{OUTPUT_PATH} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
