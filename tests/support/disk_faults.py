"""Disk faults for the journal, injected where its OS calls go (:mod:`bridge.publish._disk`)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from bridge.publish import _disk

__all__ = ["FAULTS", "Disk"]

FAULTS = {
    "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
    "EROFS": OSError(errno.EROFS, "Read-only file system"),
    "EIO": OSError(errno.EIO, "Input/output error"),
}
_CALLS = ("write", "fsync", "create", "replace")


class Disk:
    """Switchable faults on the journal's writes, fsyncs, file creations and renames."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing: dict[str, OSError] = {}
        for name in _CALLS:
            monkeypatch.setattr(_disk, name, self._wrap(name, getattr(_disk, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            error = self.failing.get(name)
            if error is not None:
                raise error
            return real(*args)

        return call

    def fail(self, error: OSError, *calls: str) -> None:
        """Fail ``calls`` (all of them when none is named) with ``error`` from now on."""
        for name in calls or _CALLS:
            self.failing[name] = error

    def heal(self) -> None:
        self.failing.clear()
