"""``ami-bridge run``: bridge AMI events to RabbitMQ until stopped."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, add_settings_arguments, settings_from_args
from bridge.logs import configure_logging
from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.service.app import BridgeApp

__all__ = ["StartupError", "add_arguments", "configure_logging", "new_event_loop", "run", "run_app"]

log = logging.getLogger("bridge.cli")


class StartupError(Exception):
    """The bridge cannot start with these settings on this host; one line for the operator."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: it cuts the per-message cost of the publish path."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def quiet_gc() -> None:
    """Keep full garbage collections rare and short, so they never hold up AMI reads.

    A journal backlog is hundreds of thousands of live objects, and with CPython's default
    thresholds a full collection then runs every few seconds and pauses the event loop for
    100 ms or more: as long as Asterisk lets a client's socket stall before dropping it.
    What is alive once everything is imported (modules, event models, the catalog) is
    frozen out of the collector, and a full collection waits for ten times as many young
    ones as by default.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def warn_missing_secrets(settings: Settings) -> None:
    """One WARNING per PBX without an AMI secret: its logins can only fail."""
    for server in settings.resolved_servers():
        if settings.ami_secret_for(server) is None:
            log.warning(
                "%s: no AMI secret configured (set AMI_BRIDGE_AMI_SECRET_FILE or the "
                "server's secret_file); Asterisk will refuse the login",
                server.id,
            )


def warn_password_in_flag(args: argparse.Namespace) -> None:
    """A password typed into ``--amqp`` shows in ``ps``: say where it belongs instead."""
    if any(urlsplit(url).password for url in getattr(args, "amqp", None) or ()):
        log.warning(
            "the --amqp URL holds a password, which other users see in 'ps'; put it in "
            "AMI_BRIDGE_AMQP_PASSWORD_FILE (or AMI_BRIDGE_AMQP_PASSWORD) instead"
        )


async def start_app(settings: Settings) -> BridgeApp:
    """The bridge with its journals open and its probe port bound, ready to ``run()``.

    Raises:
        StartupError: a setting that cannot work here (an unwritable journal folder, a
            port in use, an address not on this host); the message is one line.
    """
    from bridge.publish.journal import JournalError
    from bridge.service.app import BridgeApp

    try:
        app = BridgeApp(settings)
    except (ValueError, JournalError) as exc:
        raise StartupError(str(exc)) from None
    if app.health is not None:
        try:
            await app.health.start()
        except OSError as exc:
            await discard_app(app)
            # asyncio's message repeats the address; the errno's text says it all.
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(
                f"cannot serve /healthz and /metrics on {settings.metrics_host}:"
                f"{settings.metrics_port}: {why} (see --metrics-host, --metrics-port; "
                "0 turns them off)"
            ) from None
    return app


async def discard_app(app: BridgeApp) -> None:
    """Undo :func:`start_app` for a bridge that will not ``run()``."""
    for pipeline in app.pipelines:
        pipeline.journal.close()
    if app.health is not None:
        await app.health.stop()


def run_app(settings: Settings) -> int:
    quiet_gc()

    async def main() -> int:
        try:
            app = await start_app(settings)
        except StartupError as exc:
            print(f"ami-bridge: {exc}", file=sys.stderr)
            return int(ExitCode.CONFIG_ERROR)
        warn_missing_secrets(settings)
        return int(await app.run())

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"ami-bridge: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    configure_logging(
        settings.log_level, library_level=settings.log_library_level, fmt=settings.log_format
    )
    warn_password_in_flag(args)
    return run_app(settings)
