"""Disk faults for the journal, injected where its OS calls go: writes through
:mod:`bridge.publish._disk`, reads of segments through :mod:`bridge.publish._segments`."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from typing import Any

import pytest

from bridge.publish import _disk, _segments

__all__ = ["FAULTS", "Disk", "FailingReads"]

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


class FailingReads:
    """Opens and reads of the journal's segment files that fail with ``EIO`` while
    :attr:`failing` is set (a disk whose sectors cannot be read)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing = False
        #: Opens and reads refused so far.
        self.refused = 0
        check = self._check

        class SegmentFile(io.FileIO):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                check()
                super().__init__(*args, **kwargs)

            def read(self, size: int | None = -1, /) -> bytes:
                check()
                return super().read(size)

        monkeypatch.setattr(_segments, "FileIO", SegmentFile)

    def _check(self) -> None:
        if self.failing:
            self.refused += 1
            raise OSError(errno.EIO, "Input/output error")
