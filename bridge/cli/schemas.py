"""``ami-bridge schemas``: write the published contract (JSON Schema, AsyncAPI) to a folder.

The files come from :func:`bridge.events.contract.contract_files`; this module only
compares them with what is on disk and writes the difference.  ``--check`` writes
nothing and exits 1 when a file differs, is missing, or is left over from an event that
no longer has a model, so CI can tell that someone forgot to regenerate.
``--refresh-baseline`` also copies the JSON Schemas to ``baseline/``, the reference
the schema-evolution test compares against; do that only when the contract's major
version changes.

Without ``--out`` the folder is the checkout's ``schemas/`` when the package runs from
a checkout (``pyproject.toml`` next to it), else ``./schemas``; ``--check`` without such
a folder (an installed package, the container image) says it needs a checkout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge.cli.exit_codes import ExitCode

__all__ = [
    "BASELINE_DIR",
    "add_arguments",
    "baseline_files",
    "default_schema_dir",
    "differences",
    "run",
    "write_files",
]

BASELINE_DIR = "baseline"
# Folders whose every *.json is generated: a file there that is not generated is stale.
_GENERATED_DIRS = ("events", "status", "rpc")


def default_schema_dir() -> Path:
    """The checkout's ``schemas/`` when running from a checkout, else ``./schemas``."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "bridge").is_dir():
        return root / "schemas"
    return Path.cwd() / "schemas"


def baseline_files(files: Mapping[str, str]) -> dict[str, str]:
    """The baseline's files: every generated JSON file, under ``baseline/``."""
    return {
        f"{BASELINE_DIR}/{path}": text for path, text in files.items() if path.endswith(".json")
    }


def _stale(folder: Path, files: Mapping[str, str], prefix: str = "") -> list[str]:
    stale = []
    for sub in _GENERATED_DIRS:
        for path in sorted((folder / prefix / sub).glob("*.json")):
            relative = path.relative_to(folder).as_posix()
            if relative not in files:
                stale.append(relative)
    return stale


def differences(folder: Path, files: Mapping[str, str], prefix: str = "") -> list[str]:
    """``"<path>: missing|differs|stale"`` for every file of ``folder`` out of date.

    ``files`` maps paths relative to ``folder`` to their expected text; ``prefix`` is
    the sub-folder they live in (``""`` or ``baseline``), for finding stale files.
    """
    found = []
    for relative, text in files.items():
        path = folder / relative
        if not path.is_file():
            found.append(f"{relative}: missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{relative}: differs")
    found += [f"{relative}: stale" for relative in _stale(folder, files, prefix)]
    return found


def write_files(folder: Path, files: Mapping[str, str], prefix: str = "") -> int:
    """Write the files that differ and delete stale ones; return how many changed.

    Raises:
        OSError: a file cannot be written or deleted.
    """
    changed = 0
    for relative, text in files.items():
        path = folder / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        changed += 1
    for relative in _stale(folder, files, prefix):
        (folder / relative).unlink()
        changed += 1
    return changed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, help="folder to write (default: the checkout's schemas/)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is out of date"
    )
    mode.add_argument(
        "--refresh-baseline",
        action="store_true",
        help="also copy the JSON Schemas to baseline/ (after a major version bump)",
    )


def run(args: argparse.Namespace) -> int:
    from bridge.events.contract import contract_files

    folder: Path = args.out or default_schema_dir()
    files = contract_files()
    if args.check:
        if not folder.is_dir():
            # An installed package (the container image) has no checkout to compare with.
            print(
                f"ami-bridge schemas: no folder {folder} to check: --check compares a "
                "checkout's schemas/ (run it there, or give --out FOLDER)",
                file=sys.stderr,
            )
            return int(ExitCode.CONFIG_ERROR)
        found = differences(folder, files)
        if not found:
            print(f"{folder}: {len(files)} files up to date")
            return int(ExitCode.OK)
        print(f"{folder}: the schemas are out of date:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        print("run `ami-bridge schemas` to regenerate them", file=sys.stderr)
        return int(ExitCode.FAILURE)
    try:
        changed = write_files(folder, files)
        if args.refresh_baseline:
            changed += write_files(folder, baseline_files(files), BASELINE_DIR)
    except OSError as exc:
        print(f"ami-bridge schemas: {exc}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    print(f"{folder}: {changed} file(s) written or removed, {len(files)} generated")
    return int(ExitCode.OK)
