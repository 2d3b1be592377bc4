"""CPU contention on demand: busy-looping processes at normal priority.

``with cpu_hogs(2):`` keeps two processes spinning for the length of the block, the way
other work on a shared host takes the CPUs from the bridge.  They are plain
``python -c 'while True: pass'`` children, killed (and reaped) when the block ends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cpu_hogs"]


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy-looping processes, for the length of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
