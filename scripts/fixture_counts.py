"""Count how other projects' AMI fixtures fare in the bridge: typed, generic or invalid.

Usage::

    python scripts/fixture_counts.py GIT_DIR_OR_PATH...            # a summary per source
    python scripts/fixture_counts.py --details GIT_DIR_OR_PATH...  # plus names and reasons

Each argument is a git directory (every text file of its ``HEAD`` is read) or a file or
folder on disk.  Run it on demand: nothing of those projects is kept here.  To compare
two versions of the bridge, run it with each on ``PYTHONPATH``.

Approach
--------
Fixtures come as raw dumps, YAML, or strings in test code (``'Event: Hangup\\r\\n'``),
so the AMI messages are found by shape, not by file format: escaped line ends become
real ones, quotes and string concatenation around each line are dropped, and a message
is a line ``Event: Name`` followed by the ``Key: Value`` lines after it.  Each message
goes through the bridge's own parser and validation, exactly as ``ami-bridge replay``
would take it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.ami.protocol import AmiParser, Event
from bridge.events.validation import InvalidRecord, validate

_EVENT_LINE = re.compile(r"^Event: ?[A-Za-z][\w-]*$")
_HEADER_LINE = re.compile(r"^[A-Za-z][\w()/.-]*: ?.*$")
# What string literals in test code leave around an AMI line: quotes, b'', commas, +.
_LEFT = re.compile(r"^\s*(?:[rbuRBU]{0,2}['\"])?")
_RIGHT = re.compile(r"['\"]?\s*(?:[,+;)\\]\s*)*$")
_QUOTED_VALUE = re.compile(r": ['\"]")
_BINARY_SUFFIXES = (".png", ".jpg", ".gz", ".zip", ".wav", ".gsm", ".ulaw", ".pcap", ".tar")


@dataclass
class Tally:
    typed: int = 0
    generic: int = 0
    invalid: int = 0
    generic_names: Counter[str] = field(default_factory=Counter)
    invalid_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.typed + self.generic + self.invalid


def texts(source: str) -> Iterator[str]:
    """The text of every file of ``source`` (a git dir's HEAD, a folder or a file)."""
    path = Path(source)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        names = subprocess.run(
            ["git", f"--git-dir={path}", "ls-tree", "-r", "--name-only", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        for name in names:
            if name.endswith(_BINARY_SUFFIXES):
                continue
            blob = subprocess.run(
                ["git", f"--git-dir={path}", "show", f"HEAD:{name}"],
                capture_output=True,
                check=False,
            ).stdout
            if b"Event:" in blob and b"\0" not in blob:
                yield blob.decode("utf-8", errors="replace")
    elif path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            yield from texts(str(child))
    else:
        yield path.read_text(encoding="utf-8", errors="replace")


def messages(text: str) -> Iterator[list[str]]:
    """The AMI event messages found in ``text``, each as its header lines."""
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n")
    current: list[str] | None = None
    for raw in text.split("\n"):
        start = raw.find("Event:")
        if start > 0 and raw[start - 1] in "'\"":
            raw = raw[start:]  # a literal that opens mid-line: x = "Event: ...
        # YAML quotes a value ("Cause: '16'"): the quote is not part of it.
        line = _QUOTED_VALUE.sub(": ", _RIGHT.sub("", _LEFT.sub("", raw)), count=1)
        if _EVENT_LINE.match(line):
            if current:
                yield current
            current = [line]
        elif current is not None and _HEADER_LINE.match(line) and not line.startswith("Event:"):
            current.append(line)
        elif current is not None:
            yield current
            current = None
    if current:
        yield current


def tally(sources: Sequence[str]) -> dict[str, Tally]:
    results: dict[str, Tally] = {}
    for source in sources:
        counts = results.setdefault(source, Tally())
        for text in texts(source):
            for lines in messages(text):
                wire = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
                for item in AmiParser(expect_banner=False).feed(wire):
                    if not isinstance(item, Event):
                        continue
                    result = validate(item)
                    if isinstance(result, InvalidRecord):
                        counts.invalid += 1
                        for error in result.errors:
                            counts.invalid_reasons[f"{result.name}.{error.field}"] += 1
                    elif result.is_generic:
                        counts.generic += 1
                        counts.generic_names[result.name] += 1
                    else:
                        counts.typed += 1
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="git dirs, folders or files")
    parser.add_argument("--details", action="store_true", help="list names and reasons")
    args = parser.parse_args(argv)
    results = tally(args.sources)
    total = Tally()
    print(f"{'source':60} {'messages':>8} {'typed':>6} {'generic':>7} {'invalid':>7}")
    for source, counts in results.items():
        print(
            f"{source:60} {counts.total:8} {counts.typed:6} {counts.generic:7} {counts.invalid:7}"
        )
        total.typed += counts.typed
        total.generic += counts.generic
        total.invalid += counts.invalid
        total.generic_names.update(counts.generic_names)
        total.invalid_reasons.update(counts.invalid_reasons)
    print(f"{'all':60} {total.total:8} {total.typed:6} {total.generic:7} {total.invalid:7}")
    if args.details:
        print("generic:", dict(total.generic_names.most_common()))
        print("invalid:", dict(total.invalid_reasons.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
