"""Leaving quietly when the reader of stdout is gone (``ami-bridge replay FILE | head``)."""

from __future__ import annotations

import os
import sys

__all__ = ["silence_stdout"]


def silence_stdout() -> None:
    """Point stdout at ``/dev/null`` after a ``BrokenPipeError``.

    The interpreter flushes stdout once more at exit; into the closed pipe that flush
    would fail again and print a traceback.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
