"""Extract the AMI events that Asterisk's code raises, with each header's format string.

Usage::

    python scripts/extract_emitted.py --asterisk-git DIR           # rewrite emitted.json
    python scripts/extract_emitted.py --asterisk-git DIR --check   # exit 1 when stale

``DIR`` is a git directory of Asterisk's source (a clone or a bare mirror); the tags
in :data:`TAGS` are read from it with ``git show <tag>:<path>``, nothing is built.

Approach
--------
The documentation (``bridge/events/catalog.json``) names the events current Asterisk
documents; the code raises more: list items and their ``*Complete`` events, the events
of 11 that 12 replaced, and headers the docs leave out.  This script reads the calls
that write an event in every tagged version and records, for each event, the headers
written and the ``printf`` conversion behind each value:

* ``manager_event(flag, "Name", fmt, ...)``, ``ast_manager_event(chan, flag, "Name",
  fmt, ...)``, ``ast_manager_event_multichan(flag, "Name", n, chans, fmt, ...)`` and
  ``ast_manager_event_blob_create(flag, "Name", fmt, ...)``;
* ``astman_append``/``ast_str_append`` calls whose format holds a literal
  ``Event: Name``, together with the appends that follow it up to the blank line;
* ``astman_send_list_complete_start(s, m, "Name", count)``, which writes ``EventList``
  and ``ListItems: %d`` (``main/manager.c``), plus the appends before its end.

A header is typed ``int`` only when every write of it, in every version, is a single
integer conversion (``%d``, ``%u``, ``%ld``, ``%jd``, ``PRIu64``...) or a literal
number; anything else (``%s``, ``%f``, ``%x``, text around the conversion) is text.
Each header keeps one example of each distinct writing as its evidence (tag, file,
the ``Key: format`` text), so every integer field of the models can be traced to the
code.  Events that are only built from JSON blobs (``ast_manager_publish_event``) get
their headers from the ``ast_json_pack`` format next to them (``i``/``I`` are integers).

The result is heuristic where C is dynamic (a header name in a variable, a format
picked at run time): such writes are skipped, never guessed.  ``bridge/events/
emitted.json`` is the committed output; ``scripts/generate_models.py`` reads it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_PATH = ROOT / "bridge" / "events" / "emitted.json"

#: Asterisk versions read, oldest first: the last release of each branch since 11.
TAGS = ("11.25.3", "13.38.3", "16.30.1", "18.26.4", "20.20.1", "21.12.3", "22.10.1", "master")

_FLAG_CLASSES = {
    "EVENT_FLAG_SYSTEM": "system",
    "EVENT_FLAG_CALL": "call",
    "EVENT_FLAG_LOG": "log",
    "EVENT_FLAG_VERBOSE": "verbose",
    "EVENT_FLAG_COMMAND": "command",
    "EVENT_FLAG_AGENT": "agent",
    "EVENT_FLAG_USER": "user",
    "EVENT_FLAG_CONFIG": "config",
    "EVENT_FLAG_DTMF": "dtmf",
    "EVENT_FLAG_REPORTING": "reporting",
    "EVENT_FLAG_CDR": "cdr",
    "EVENT_FLAG_DIALPLAN": "dialplan",
    "EVENT_FLAG_ORIGINATE": "originate",
    "EVENT_FLAG_AGI": "agi",
    "EVENT_FLAG_CC": "cc",
    "EVENT_FLAG_AOC": "aoc",
    "EVENT_FLAG_TEST": "test",
    "EVENT_FLAG_SECURITY": "security",
    "EVENT_FLAG_MESSAGE": "message",
}
# Calls that write a whole event: name -> (index of the name argument, of the format).
_EVENT_CALLS = {
    "manager_event": (1, 2),
    "ast_manager_event": (2, 3),
    "ast_manager_event_multichan": (1, 4),
    "ast_manager_event_blob_create": (1, 2),
}
_APPEND_CALLS = ("astman_append", "ast_str_append", "ast_cli")
#: Calls that end a run of appends: the reply or the list is complete.
_END_CALLS = (
    "astman_send_list_complete_end",
    "astman_send_ack",
    "astman_send_error",
    "astman_send_listack",
    "astman_start_ack",
    "astman_send_response",
)
_CALL_NAMES = (*_EVENT_CALLS, *_APPEND_CALLS, *_END_CALLS, "astman_send_list_complete_start")
_CALL_RE = re.compile(r"\b(" + "|".join(_CALL_NAMES) + r")\s*\(")
_PUBLISH_RE = re.compile(r"\bast_manager_publish_event\s*\(\s*\"(\w[\w-]*)\"\s*,\s*(\w+)")
_PACK_RE = re.compile(r"\bast_json_pack\s*\(")
_HEADER_RE = re.compile(r"^(?:%s)*([A-Za-z][A-Za-z0-9_()-]*): ([^\r\n]*)\r?$", re.MULTILINE)
#: Headers that belong to the envelope or the action, not to an event's fields.
_NOT_FIELDS = frozenset({"Event", "Privilege", "ActionID", "Timestamp"})
_CONVERSION = r"%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|j|z|t|L|q)?[diouxXeEfFgGcsp]"
_INT_VALUE_RE = re.compile(r"^%[-+ 0]*\d*(?:hh|h|ll|l|j|z|t|q)?[diu]$")
_CONVERSION_RE = re.compile(_CONVERSION)
# inttypes.h macros between literals: "%" PRIu64 -> "%llu".
_PRI_RE = re.compile(r"^PRI([diuxX])(?:8|16|32|64|MAX|PTR)$")


@dataclass
class Write:
    """One header written by one call: ``Key: format`` in ``tag:path``."""

    key: str
    value: str
    tag: str
    path: str

    @property
    def kind(self) -> str:
        return value_kind(self.value)


@dataclass
class EventFacts:
    name: str
    classes: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    how: set[str] = field(default_factory=set)
    writes: dict[str, list[Write]] = field(default_factory=dict)

    def add(self, write: Write) -> None:
        self.writes.setdefault(write.key, []).append(write)


def value_kind(value: str) -> str:
    """``int`` for one integer conversion or a literal number, else ``text``."""
    value = value.strip()
    if _INT_VALUE_RE.match(value) or re.fullmatch(r"-?\d+", value):
        return "int"
    return "text"


# -- a small C reader -------------------------------------------------------------------


def after_literal(source: str, start: int) -> int:
    """The offset just after the string or char literal that opens at ``start``."""
    quote, i, n = source[start], start + 1, len(source)
    while i < n and source[i] != quote:
        i += 2 if source[i] == "\\" else 1
    return i + 1


def strip_comments(source: str) -> str:
    """``source`` with comments blanked out (string literals kept, offsets kept)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == '"' or c == "'":
            j = after_literal(source, i)
            out.append(source[i:j])
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
        elif source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def call_arguments(source: str, open_paren: int) -> tuple[list[str], int]:
    """The top-level arguments of the call whose ``(`` is at ``open_paren``, and the
    offset after its ``)``."""
    depth, i, start, args = 0, open_paren, open_paren + 1, []
    n = len(source)
    while i < n:
        c = source[i]
        if c == '"' or c == "'":
            i = after_literal(source, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(source[start:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(source[start:i])
            start = i + 1
        i += 1
    return args, n


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'"}


def literal_text(argument: str) -> str | None:
    """The text of an argument made only of adjacent string literals (and ``PRI*``
    macros), or None when it holds anything else."""
    parts: list[str] = []
    # Preprocessor lines between the literals (#ifdef IMAP_STORAGE) keep both branches.
    rest = re.sub(r"(?m)^[ \t]*#.*$", "", argument).strip()
    if not rest.startswith('"'):
        return None
    while rest:
        if rest.startswith('"'):
            j, buf = 1, []
            while j < len(rest) and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < len(rest):
                    buf.append(_ESCAPES.get(rest[j + 1], rest[j + 1]))
                    j += 2
                else:
                    buf.append(rest[j])
                    j += 1
            parts.append("".join(buf))
            rest = rest[j + 1 :].lstrip()
            continue
        token = re.match(r"\w+", rest)
        if token is None:
            return None
        macro = _PRI_RE.match(token.group())
        if macro is None:
            return None
        parts.append("ll" + macro.group(1))
        rest = rest[token.end() :].lstrip()
    return "".join(parts)


def headers_of(fmt: str) -> Iterator[tuple[str, str]]:
    """(key, value format) of every ``Key: value\\r\\n`` line of a format string."""
    for match in _HEADER_RE.finditer(fmt):
        if match.group(1) not in _NOT_FIELDS:
            yield match.group(1), match.group(2)


def class_of(argument: str) -> str | None:
    flags = re.findall(r"EVENT_FLAG_\w+", argument)
    return _FLAG_CLASSES.get(flags[0]) if flags else None


# -- extraction per file ----------------------------------------------------------------


def extract_file(source: str, tag: str, path: str, found: dict[str, EventFacts]) -> None:
    text = strip_comments(source)
    calls = [
        (m.group(1), *call_arguments(text, m.end() - 1), m.start()) for m in _CALL_RE.finditer(text)
    ]
    current: EventFacts | None = None  # an event being written by a run of appends
    previous_end = 0
    for name, args, end, start in calls:
        if "\n}" in text[previous_end:start]:
            current = None  # a function ended: its appends wrote nothing more
        previous_end = end
        if name in _END_CALLS:
            current = None
        elif name in _EVENT_CALLS:
            current = None
            name_at, fmt_at = _EVENT_CALLS[name]
            if len(args) <= name_at:
                continue
            event = literal_text(args[name_at])
            if not event or not re.fullmatch(r"\w[\w-]*", event):
                continue
            facts = found.setdefault(event, EventFacts(event))
            facts.tags.add(tag)
            facts.files.add(path)
            facts.how.add(name)
            privilege = class_of(",".join(args[:name_at]))
            if privilege:
                facts.classes.add(privilege)
            fmt = literal_text(args[fmt_at]) if len(args) > fmt_at else None
            for key, value in headers_of("\n" + (fmt or "")):
                facts.add(Write(key, value, tag, path))
        elif name == "astman_send_list_complete_start":
            event = literal_text(args[2]) if len(args) > 2 else None
            if not event:
                current = None
                continue
            current = found.setdefault(event, EventFacts(event))
            current.tags.add(tag)
            current.files.add(path)
            current.how.add("list_complete")
            current.add(Write("EventList", "Complete", tag, "main/manager.c"))
            current.add(Write("ListItems", "%d", tag, "main/manager.c"))
        else:
            fmt = next((t for a in args if (t := literal_text(a)) is not None), None)
            if fmt is None:
                continue
            if name == "ast_cli":
                current = None
                continue
            marker = re.search(r"(?:^|\n)Event: (\w[\w-]*)\r?\n", fmt)
            if marker:
                current = found.setdefault(marker.group(1), EventFacts(marker.group(1)))
                current.tags.add(tag)
                current.files.add(path)
                current.how.add("Event: literal")
                privilege_header = re.search(r"Privilege: (\w+)", fmt)
                if privilege_header:
                    current.classes.add(privilege_header.group(1).lower())
                fmt = fmt[marker.end() - 1 :]
            if current is None:
                continue
            for key, value in headers_of("\n" + fmt):
                current.add(Write(key, value, tag, path))
            if "\r\n\r\n" in fmt or fmt.endswith("\n\n") or fmt == "\r\n":
                current = None
    for match in _PUBLISH_RE.finditer(text):
        event, flag = match.group(1), match.group(2)
        facts = found.setdefault(event, EventFacts(event))
        facts.tags.add(tag)
        facts.files.add(path)
        facts.how.add("ast_manager_publish_event")
        privilege = class_of(flag)
        if privilege:
            facts.classes.add(privilege)
        for key, kind in json_pack_before(text, match.start()):
            facts.add(Write(key, "%d" if kind == "int" else "%s", tag, path))


def json_pack_before(text: str, offset: int) -> list[tuple[str, str]]:
    """Keys and kinds of the last flat ``ast_json_pack`` within 40 lines before
    ``offset``: ``s: i``/``s: I`` are integers, the rest text."""
    window_start = max(0, offset - 4000)
    packs = list(_PACK_RE.finditer(text, window_start, offset))
    if not packs:
        return []
    args, _ = call_arguments(text, packs[-1].end() - 1)
    fmt = literal_text(args[0]) if args else None
    if fmt is None or re.search(r"[\[{].*[\[{]", fmt):
        return []  # nested objects: not the event's flat headers
    kinds = re.findall(r"s\s*:\s*([a-zA-Z])", fmt)
    keys = args[1::2]
    pairs = []
    for key_arg, kind in zip(keys, kinds, strict=False):
        key = literal_text(key_arg)
        if key and re.fullmatch(r"[A-Za-z][\w-]*", key):
            pairs.append((key, "int" if kind in "iI" else "text"))
    return pairs


#: Functions that write the snapshot header groups, by the file that defines them.
SNAPSHOT_BUILDERS = {
    "Channel": ("main/manager_channels.c", "ast_manager_build_channel_state_string_prefix"),
    "Bridge": ("main/manager_bridges.c", "ast_manager_build_bridge_state_string_prefix"),
}
#: Functions that write the headers of several events: name -> (file, events fed).
SHARED_BUILDERS = {
    "rtcp_report_to_ami": ("main/rtp_engine.c", ("RTCPSent", "RTCPReceived")),
}
_PREFIXED_HEADER_RE = re.compile(r"%s([A-Za-z][A-Za-z0-9_-]*): ([^\r\n]*)\r?$", re.MULTILINE)


def extract_snapshot(
    source: str,
    function: str,
    tag: str,
    path: str,
    facts: EventFacts,
    pattern: re.Pattern[str] = _PREFIXED_HEADER_RE,
) -> None:
    """The headers a builder function writes: behind a ``%s`` prefix for the snapshot
    builders, as plain ``Key: value`` lines with ``pattern=_HEADER_RE``."""
    text = strip_comments(source)
    definition = re.search(rf"\n[^\n;]*\b{function}\s*\([^;{{]*\)\s*\{{", text)
    if definition is None:
        return
    end = text.find("\n}", definition.end())
    body = text[definition.end() : end]
    for match in re.finditer(r"\b(ast_str_set|ast_str_append)\s*\(", body):
        args, _ = call_arguments(body, match.end() - 1)
        fmt = next((t for a in args if (t := literal_text(a)) is not None), None)
        for key, value in pattern.findall(fmt or ""):
            if key not in _NOT_FIELDS:
                facts.add(Write(key, value, tag, path))
    facts.tags.add(tag)
    facts.files.add(path)


# -- driving ----------------------------------------------------------------------------


def files_to_read(git_dir: Path, tag: str) -> list[str]:
    """C files of ``tag`` that call one of the event-writing functions."""
    pattern = "|".join((*_EVENT_CALLS, "astman_send_list_complete_start", "Event: "))
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", "grep", "-l", "-E", pattern, tag, "--", "*.c"],
        capture_output=True,
        check=True,
        text=True,
    )
    paths = (line.split(":", 1)[1] for line in result.stdout.splitlines())
    # tests/ holds the unit tests' fake events (FakeMI), which no server sends.
    return sorted(path for path in paths if not path.startswith("tests/"))


def git_show(git_dir: Path, tag: str, path: str) -> str | None:
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{tag}:{path}"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", errors="replace")


def extract(git_dir: Path, tags: Sequence[str] = TAGS) -> dict[str, Any]:
    found: dict[str, EventFacts] = {}
    snapshots = {kind: EventFacts(kind) for kind in SNAPSHOT_BUILDERS}
    for tag in tags:
        for path in files_to_read(git_dir, tag):
            source = git_show(git_dir, tag, path)
            if source is not None:
                extract_file(source, tag, path, found)
        for kind, (path, function) in SNAPSHOT_BUILDERS.items():
            source = git_show(git_dir, tag, path)
            if source is not None:
                extract_snapshot(source, function, tag, path, snapshots[kind])
        for function, (path, events) in SHARED_BUILDERS.items():
            source = git_show(git_dir, tag, path)
            for event in events if source is not None else ():
                facts = found.setdefault(event, EventFacts(event))
                extract_snapshot(source or "", function, tag, path, facts, _HEADER_RE)
    return {
        "tags": list(tags),
        "events": render(found, tags),
        "snapshots": render(snapshots, tags),
    }


def render(found: dict[str, EventFacts], tags: Sequence[str]) -> dict[str, Any]:
    """Each event's facts as JSON, the fields with their type and evidence."""
    order = {tag: i for i, tag in enumerate(tags)}
    events: dict[str, Any] = {}
    for name in sorted(found, key=str.lower):
        facts = found[name]
        fields: dict[str, Any] = {}
        for key, writes in facts.writes.items():
            evidence: dict[str, str] = {}
            for write in sorted(writes, key=lambda w: (-order[w.tag], w.path)):
                evidence.setdefault(write.value, f"{write.tag} {write.path}: {key}: {write.value}")
            kinds = {write.kind for write in writes}
            fields[key] = {
                "type": "int" if kinds == {"int"} else "text",
                "evidence": sorted(evidence.values()),
            }
        events[name] = {
            "classes": sorted(facts.classes),
            "versions": sorted(facts.tags, key=order.__getitem__),
            "files": sorted(facts.files),
            "how": sorted(facts.how),
            "fields": fields,
        }
    return events


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asterisk-git", type=Path, required=True, help="Asterisk git dir")
    parser.add_argument("--check", action="store_true", help="fail if emitted.json is stale")
    args = parser.parse_args(argv)
    text = json.dumps(extract(args.asterisk_git), indent=1, sort_keys=True) + "\n"
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
