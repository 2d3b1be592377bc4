"""The OS calls that change a journal directory, in one place.

Every write, fsync, file creation and state save of the journal goes through these
functions, so the journal's handling of a failing disk (``ENOSPC``, ``EROFS``, ``EIO``) can
be tested without a real full or broken filesystem: a test replaces one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create", "fsync", "replace", "write"]


def write(fd: int, data: memoryview) -> int:
    return os.write(fd, data)


def fsync(fd: int) -> None:
    os.fsync(fd)


def create(path: Path, flags: int) -> int:
    """Open ``path`` for writing with ``flags`` (``O_CREAT`` among them), mode 0644."""
    return os.open(path, flags, 0o644)


def replace(source: Path, target: Path) -> None:
    os.replace(source, target)
