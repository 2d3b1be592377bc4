"""The bridge process: one publisher, one pipeline per PBX, probes, signals, shutdown.

Startup order matters: the broker connection and the topology come first, so no AMI
event is read before it has somewhere to go; only then do the AMI sessions log in.
Journalled records from an earlier run are published before anything new.  A member of
a hot-standby pair (``ha``) is the exception: it logs in at once and journals while it
waits for the broker, since a pair exists so that no event goes unread, and a pair
whose broker comes up after it (a whole site restarting) would otherwise miss every
event until then.

Shutdown (SIGTERM or SIGINT): stop taking action requests from the bus (see
:mod:`bridge.service.rpc`), stop reading AMI (Logoff), publish what is journalled
within ``shutdown_timeout``, close the publisher, save the journal.  Whatever is still
journalled is published on the next start.  A second signal skips the draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import defaultdict

from bridge.ami.errors import LoginFailed
from bridge.ami.session import next_unix_ms_epoch
from bridge.cli.exit_codes import ExitCode
from bridge.ha.lock import LockLink
from bridge.ha.member import HaMember
from bridge.publish.amqp import AmqpPublisher, PublishResult
from bridge.publish.broker import BrokerError, BrokerRefused, mask_url
from bridge.publish.failover import BrokerEndpoints, reconnect
from bridge.publish.topology import TopologyConflict
from bridge.service.http import HealthServer
from bridge.service.metrics import Metrics
from bridge.service.rpc import RpcServer
from bridge.service.rpc_requests import ActionPolicy
from bridge.service.server import ServerPipeline, Token
from bridge.settings import Settings

__all__ = ["BridgeApp"]

log = logging.getLogger(__name__)


class BridgeApp:
    """Owns every task of a running bridge.  ``await run()`` returns the exit code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        tls = settings.amqp_tls()
        #: The broker nodes and the reconnect policy, shared by the publisher and the actions.
        self.endpoints = BrokerEndpoints(
            tuple(settings.amqp_urls_with_password()),
            shuffle=settings.amqp_endpoint_order == "shuffled",
            backoff_base=settings.amqp_reconnect_base,
            backoff_cap=settings.amqp_reconnect_cap,
        )
        self._failover = self.endpoints.policy()
        self.publisher: AmqpPublisher[Token] = AmqpPublisher(
            self._failover.current,
            exchange=settings.exchange,
            window=settings.publish_window,
            tls=tls,
            heartbeat=settings.amqp_heartbeat,
            confirm_timeout=settings.amqp_confirm_timeout,
            on_alarm=self._on_alarm,
            unrouted_queue_type=settings.unrouted_queue_type,
            unrouted_max_length=settings.unrouted_max_length,
            stream=settings.stream_retention(),
        )
        servers = settings.resolved_servers()
        for server in servers:
            settings.ami_secret_for(server)  # an unreadable secret file is a startup error
        self.pipelines = [
            ServerPipeline(server, settings, self.publisher, self.metrics) for server in servers
        ]
        self._stop = asyncio.Event()
        #: Hot standby (``ha``): one lock link per server; empty without ``ha``.
        self.locks: list[LockLink] = []
        if settings.ha:
            self.locks = [self._lock_link(pipeline) for pipeline in self.pipelines]
        #: Takes AMI action requests from the bus; None when ``rpc_exchange`` is empty.
        self.rpc: RpcServer | None = None
        if settings.rpc_exchange:
            self.rpc = RpcServer(
                self.endpoints,
                exchange=settings.rpc_exchange,
                sessions={pipeline.id: pipeline.session for pipeline in self.pipelines},
                policy=ActionPolicy(settings.rpc_allow, settings.rpc_enable),
                timeout=settings.rpc_timeout,
                tls=tls,
                heartbeat=settings.amqp_heartbeat,
                # The publisher's loop reports the broker's outages; one report is enough.
                quiet_outages=True,
            )
        self.health: HealthServer | None = None
        if settings.metrics_port:
            self.health = HealthServer(
                settings.metrics_host,
                settings.metrics_port,
                ready=self.readiness,
                metrics=self.metrics.render,
            )
        #: Set once the broker is connected and the topology declared.
        self.broker_ready = asyncio.Event()
        self._force = asyncio.Event()
        self._exit = ExitCode.OK

    def _lock_link(self, pipeline: ServerPipeline) -> LockLink:
        """Make ``pipeline`` one member of a hot-standby pair (``ha``)."""
        settings = self.settings
        member = HaMember(
            pipeline.id,
            pipeline.journal,
            instance=settings.resolved_instance_id(),
            fence=float(settings.ha_lock_heartbeat),
            announce=pipeline.announce_active,
            wake=pipeline.wake,
            epochs=next_unix_ms_epoch,
        )
        pipeline.ha = member
        return LockLink(
            member,
            self.endpoints,
            exchange=settings.exchange,
            heartbeat=settings.ha_lock_heartbeat,
            checkpoint_interval=settings.ha_checkpoint_interval,
            stop=self._stop,
            tls=settings.amqp_tls(),
        )

    def readiness(self) -> tuple[bool, str]:
        """Ready when every AMI session is logged in, the broker is connected and not
        blocking publishes, and (when actions are on) the actions consumer is in place.

        A journal that cannot be written makes the bridge not ready: events still flow,
        from memory, but a restart or a broker outage would now lose them, which is what
        an operator (or an orchestrator routing traffic) must hear about.
        """
        problems = [f"{p.id}: AMI not logged in" for p in self.pipelines if not p.session.connected]
        problems += [
            f"{p.id}: journal cannot be written ({p.journal.unavailable}); events kept in memory"
            for p in self.pipelines
            if p.journal.unavailable is not None
        ]
        if not self.publisher.is_connected:
            problems.append("broker not connected")
        elif self.publisher.blocked is not None:
            problems.append(f"broker blocks publishing: {self.publisher.blocked}")
        rpc = self.rpc
        if rpc is not None and rpc.running and not rpc.ready.is_set():
            problems.append("action requests not consumed yet")
        if problems:
            return False, "; ".join(problems)
        if rpc is None:
            return True, "ready"
        if rpc.off_reason is not None:
            # Given up (a conflicting exchange): events still flow, so the bridge is ready.
            return True, f"ready; action requests are off: {rpc.off_reason}"
        return True, f"ready; taking action requests on {rpc.exchange!r}"

    def _on_alarm(self, reason: str | None) -> None:
        self.metrics.broker_blocked.set(0 if reason is None else 1)

    def request_stop(self, code: ExitCode = ExitCode.OK) -> None:
        """Begin a graceful shutdown (a second call forces it)."""
        if self._stop.is_set():
            self._force.set()
        if code is not ExitCode.OK:
            self._exit = code
        self._stop.set()

    async def run(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if self.health is not None:
            await self.health.start()
        read_at_once = bool(self.locks)
        try:
            if not read_at_once and not await self._connect_broker():
                return self._exit
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._dispatch_results(), name="results")]
                broker = self._broker(connect=read_at_once)
                tasks.append(group.create_task(broker, name="broker"))
                if self.rpc is not None:
                    tasks.append(group.create_task(self.rpc.run(), name="rpc"))
                for lock in self.locks:
                    name = f"lock-{lock.member.server_id}"
                    tasks.append(group.create_task(lock.run(), name=name))
                for pipeline in self.pipelines:
                    tasks.append(group.create_task(pipeline.feed(), name=f"feed-{pipeline.id}"))
                    tasks.append(
                        group.create_task(pipeline.housekeeping(), name=f"house-{pipeline.id}")
                    )
                    tasks.append(
                        group.create_task(self._run_session(pipeline), name=f"ami-{pipeline.id}")
                    )
                    if self.settings.status_interval:
                        status = pipeline.report_status(self.settings.status_interval)
                        tasks.append(group.create_task(status, name=f"status-{pipeline.id}"))
                await self._stop.wait()
                await self._shutdown()
                for task in tasks:
                    task.cancel()
        finally:
            for pipeline in self.pipelines:
                pipeline.journal.close()
            if self.health is not None:
                await self.health.stop()
        return self._exit

    async def _run_session(self, pipeline: ServerPipeline) -> None:
        try:
            await pipeline.session.run()
        except LoginFailed as exc:
            log.error("%s: %s; exiting (ami_on_login_failure=exit)", pipeline.id, exc)
            self.request_stop(ExitCode.FAILURE)

    async def _connect_broker(self, *, at_start: bool = True) -> bool:
        """Connect (declaring the topology), trying node after node; False means give up.

        At start, a broker that refuses the bridge (credentials, virtual host, permission)
        ends it with exit code 2 unless ``amqp_on_auth_failure`` is ``retry``; later every
        refusal is retried with backoff.
        """

        def give_up(error: BrokerError) -> bool:
            return (
                at_start
                and isinstance(error, BrokerRefused)
                and self.settings.amqp_on_auth_failure == "exit"
            )

        async def attempt(url: str) -> bool:
            await self.publisher.connect(url)
            return True

        try:
            connected = await reconnect(
                self._failover,
                attempt,
                what="publishing",
                stop=self._stop,
                give_up=give_up,
            )
        except BrokerRefused as exc:
            log.error("%s; exiting (amqp_on_auth_failure=exit)", exc)
            self._exit = ExitCode.CONFIG_ERROR
            return False
        except TopologyConflict as exc:
            log.error("%s; exiting", exc)
            self._exit = ExitCode.FAILURE
            return False
        if not connected:
            return False
        self.metrics.broker_connected.set(1)
        self.broker_ready.set()
        return True

    async def _broker(self, *, connect: bool) -> None:
        """Supervise the broker connection, first making it when ``connect``."""
        if connect:
            if not await self._connect_broker():
                if not self._stop.is_set():  # refused or conflicting: exit as at start
                    self.request_stop(self._exit)
                return
            for pipeline in self.pipelines:
                pipeline.wake()  # what was journalled meanwhile
        await self._supervise_broker()

    async def _supervise_broker(self) -> None:
        while True:
            proven = asyncio.create_task(self.publisher.wait_proven())
            await self.publisher.wait_connection_lost()
            if proven.done():
                self._failover.healthy()
            proven.cancel()
            self.metrics.broker_connected.set(0)
            if self._stop.is_set():
                return
            self._failover.lost()
            log.warning(
                "events stay journalled until a broker node is back; trying %s",
                mask_url(self._failover.current),
            )
            if not await self._connect_broker(at_start=False):
                if not self._stop.is_set():  # gave up by itself (a topology conflict)
                    self.request_stop(self._exit)
                return
            log.info("broker connection restored; publishing the journalled backlog")
            for pipeline in self.pipelines:
                pipeline.wake(rewind=True)

    async def _dispatch_results(self) -> None:
        async for batch in self.publisher.results():
            by_pipeline: defaultdict[ServerPipeline, list[PublishResult[Token]]] = defaultdict(list)
            for result in batch:
                by_pipeline[result.token.pipeline].append(result)
            for pipeline, results in by_pipeline.items():
                pipeline.on_results(results)

    async def _shutdown(self) -> None:
        timeout = self.settings.shutdown_timeout
        deadline = time.monotonic() + timeout
        log.info("shutting down: logging off AMI, then publishing what is journalled")
        if self.rpc is not None:
            # No new actions once the sessions start logging off; running ones may finish.
            await self.rpc.stop(grace=min(2.0, timeout))
        await asyncio.gather(
            *(p.session.stop(timeout=min(5.0, timeout)) for p in self.pipelines),
            return_exceptions=True,
        )
        while not self._force.is_set() and time.monotonic() < deadline:
            if all(p.journal.depth == 0 for p in self.pipelines) or not self.publisher.is_connected:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._force.wait(), 0.05)
        left = sum(p.journal.depth for p in self.pipelines)
        if left:
            log.warning("%d messages stay journalled and are published on the next start", left)
        else:
            log.info("every journalled message is confirmed; stopping")
        await self.publisher.close(
            grace=0 if self._force.is_set() else max(0.0, deadline - time.monotonic())
        )
        if self._force.is_set():
            self._exit = ExitCode.FORCED
