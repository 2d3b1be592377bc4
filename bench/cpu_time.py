"""CPU time of the processes a benchmark run involves: this one, a child, the local broker.

On a 2-core host the bridge, RabbitMQ and the simulator share the same cores, so an
end-to-end rate says little without what each of them spent an event.  Linux only
(``/proc``); a process that cannot be read counts as ``None``, never as zero.

``broker_pid(url)`` finds the process listening on the URL's port when the host is this
machine: the listening socket's inode in ``/proc/net/tcp*``, then the process holding
that inode among its file descriptors (which needs the right to read them).
"""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit

__all__ = ["CpuClock", "broker_pid", "cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")
_LOCAL = {"127.0.0.1", "localhost", "::1"}
_LISTEN = "0A"


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU seconds of ``pid`` so far (all its threads), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def broker_pid(url: str) -> int | None:
    """The pid of the local process listening on ``url``'s port, or None."""
    parts = urlsplit(url)
    if parts.hostname not in _LOCAL:
        return None
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        return int(pid)
    return None


def _listening_inodes(port: int) -> set[str]:
    suffix = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(suffix) and fields[3] == _LISTEN:
                    inodes.add(fields[9])
    return inodes


class CpuClock:
    """CPU seconds each named process spends from :meth:`start` to :meth:`stop`."""

    def __init__(self, **pids: int | str | None) -> None:
        self._pids = pids
        self._started: dict[str, float | None] = {}
        self.spent: dict[str, float | None] = {}

    def start(self) -> None:
        self._started = {name: self._read(pid) for name, pid in self._pids.items()}

    def stop(self) -> None:
        for name, pid in self._pids.items():
            before, after = self._started.get(name), self._read(pid)
            self.spent[name] = None if before is None or after is None else after - before

    @staticmethod
    def _read(pid: int | str | None) -> float | None:
        return None if pid is None else cpu_seconds(pid)
