"""``ami-bridge run``: bridge AMI events to RabbitMQ until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, add_settings_arguments, settings_from_args
from bridge.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: it cuts the per-message cost of the publish path."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_app(settings: Settings) -> int:
    from bridge.service.app import BridgeApp

    async def main() -> int:
        try:
            app = BridgeApp(settings)
        except ValueError as exc:
            print(f"ami-bridge: {exc}", file=sys.stderr)
            return int(ExitCode.CONFIG_ERROR)
        return int(await app.run())

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"ami-bridge: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    configure_logging(settings.log_level)
    return run_app(settings)
