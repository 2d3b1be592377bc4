"""Private RabbitMQ nodes for tests that disturb a broker: kill it, cluster it, alarm it.

Each node is a ``rabbitmq-server`` of its own on loopback: its own node name (with the
test run's process id, so two runs side by side never meet), AMQP port (5700-5799),
distribution port (25700-25799), data and log folders, an empty plugin list and a config
file.  The nodes of one run share an Erlang cookie in a private ``HOME``, which
``rabbitmqctl`` is given too; the machine's own RabbitMQ (its cookie, node, users and
vhosts) is never touched.

The Debian wrappers in ``/usr/sbin`` switch to the ``rabbitmq`` user, whose home and
cookie are the shared node's; the scripts in ``/usr/lib/rabbitmq/bin`` run as the caller
and honour the environment, so those are used.

:class:`RabbitCluster` starts three nodes at once and joins the second and third to the
first with ``rabbitmqctl join_cluster``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RabbitCluster", "RabbitNode", "rabbitmq_scripts"]

_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
_PORTS = range(5700, 5800)
_DIST_OFFSET = 20000  # 5700 -> 25700
_BOOT_TIMEOUT = 60.0


def rabbitmq_scripts() -> Path:
    """Where ``rabbitmq-server`` and ``rabbitmqctl`` live.

    Raises:
        RuntimeError: RabbitMQ is not installed (the message says what to install).
    """
    if (_SCRIPTS / "rabbitmq-server").exists():
        return _SCRIPTS
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise RuntimeError("these tests start private RabbitMQ nodes: install rabbitmq-server")
    return Path(found).resolve().parent


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port + _DIST_OFFSET))
        except OSError:
            return False
    return True


def free_node_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` AMQP ports in 5700-5799 whose distribution twins are free too."""
    taken = taken or set()
    ports = [p for p in _PORTS if p not in taken and _port_free(p)][:count]
    if len(ports) < count:
        raise RuntimeError(f"fewer than {count} free ports in 5700-5799 for private nodes")
    return ports


@dataclass
class RabbitNode:
    """One private node: ``start()``, ``wait_started()``, ``kill()``, ``stop()``."""

    name: str
    port: int
    root: Path
    home: Path
    cluster_with: list[str] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def dist_port(self) -> int:
        return self.port + _DIST_OFFSET

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def url_for(self, user: str, password: str, vhost: str = "/") -> str:
        from urllib.parse import quote

        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_PID_FILE=str(self.root / "pid"),
            # Distribution on loopback only.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_CRASH_DUMP=str(self.root / "erl_crash.dump"),
        )
        return env

    def prepare(self) -> None:
        for folder in ("mnesia", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.port}",
                    "log.console = false",
                    "log.file.level = warning",
                    # A small machine: no disk alarm from a nearly full /tmp.
                    "disk_free_limit.absolute = 50MB",
                    "",
                ]
            )
        )

    def start(self) -> None:
        """Start the node (its data folder is kept across restarts)."""
        if self.running:
            return
        self.prepare()
        with (self.root / "log" / "console.out").open("ab") as out:
            self._process = subprocess.Popen(
                [str(rabbitmq_scripts() / "rabbitmq-server")],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """``rabbitmqctl -n NODE ARGS...``; its output.

        Raises:
            RuntimeError: it failed; the message holds its output.
        """
        done = subprocess.run(
            [str(rabbitmq_scripts() / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} on {self.node} failed ({done.returncode}): "
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode(errors="replace")

    def wait_started(self, timeout: float = _BOOT_TIMEOUT) -> None:
        """Return once the node accepts AMQP connections.

        Raises:
            RuntimeError: it exited or did not come up within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.node} exited at start; see {self.root / 'log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.node} did not start within {timeout} s")

    def beam_pid(self) -> int | None:
        try:
            return int((self.root / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """``kill -9`` the node's Erlang VM, as a crash would."""
        pid = self.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop the node gracefully (``rabbitmqctl stop``), killing it if that fails."""
        if not self.running:
            return
        try:
            self.ctl("stop", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()
        self._reap()

    def _reap(self) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)
        (self.root / "pid").unlink(missing_ok=True)


class RabbitCluster:
    """Three private nodes joined into one cluster, started once and torn down after."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(f"AMIBRIDGETEST{os.getpid()}{time.time_ns()}")
            cookie.chmod(0o400)
        prefix = f"amib{os.getpid()}n"
        ports = free_node_ports(size)
        self.nodes = [
            RabbitNode(f"{prefix}{n}", port, root / f"node{n}", home)
            for n, port in enumerate(ports, 1)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_at(self, url_or_port: str | int) -> RabbitNode:
        """The node listening on the port of ``url_or_port``."""
        port = (
            url_or_port
            if isinstance(url_or_port, int)
            else int(str(url_or_port).rsplit(":", 1)[1].split("/")[0])
        )
        return next(node for node in self.nodes if node.port == port)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_started()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
            node.wait_started()
        self.wait_formed()

    def wait_formed(self, timeout: float = 60.0) -> None:
        """Return once every node runs and sees all the others.

        Raises:
            RuntimeError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        names = {node.node for node in self.nodes}
        while time.monotonic() < deadline:
            try:
                for node in self.nodes:
                    node.wait_started(timeout=max(1.0, deadline - time.monotonic()))
                status = self.nodes[0].ctl("cluster_status", "--formatter", "json")
                if all(name in status for name in names) and _running_nodes(status) == names:
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the cluster did not form within {timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    @contextlib.contextmanager
    def running(self) -> Iterator[RabbitCluster]:
        try:
            self.start()
            yield self
        finally:
            self.stop()


def _running_nodes(status_json: str) -> set[str]:
    import json

    return set(json.loads(status_json).get("running_nodes", []))
