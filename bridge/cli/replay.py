"""``ami-bridge replay FILE``: a raw AMI capture through the bridge's own pipeline.

The capture (bytes as read from the socket) is parsed, journalled as records, rendered
(validate -> encode -> route) exactly as a live read would be, then printed as JSON lines
(``--stdout``) or published (``--publish``).  Every message gets epoch 0 and a sequence
number from 1 in file order, so replaying the same file twice yields the same message
ids and consumers dedupe the second run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from bridge.ami.client import as_stream_item
from bridge.ami.protocol import AmiParser, Banner, Event, Response
from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, add_settings_arguments, settings_from_args
from bridge.cli.pipes import silence_stdout
from bridge.cli.run import configure_logging, new_event_loop
from bridge.ha.event_id import EventIds
from bridge.publish.records import decode, encode_event, encode_malformed
from bridge.publish.routing import Router
from bridge.service.render import Rendered, Renderer
from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.publish.broker import TlsOptions

REPLAY_EPOCH = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="raw AMI capture (bytes as read from the socket)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdout", action="store_true", help="print JSON lines (the default)")
    mode.add_argument("--publish", action="store_true", help="publish to the exchange")
    add_settings_arguments(parser)
    parser.set_defaults(server_id="replay")


def render_capture(data: bytes, renderer: Renderer, received_at: float) -> Iterator[Rendered]:
    """Every message the bridge would publish for ``data``, in file order."""
    parser = AmiParser()
    event_ids = EventIds()  # as the reader numbers a live stream
    seq = 0
    for item in parser.feed(data) + parser.feed_eof():
        if isinstance(item, Banner | Response):
            continue  # the banner and responses to actions are not events
        seq += 1
        stream_item = as_stream_item(item)
        if isinstance(stream_item, Event):
            event_id = event_ids.next(stream_item.raw)
            record = encode_event(REPLAY_EPOCH, seq, received_at, stream_item, event_id=event_id)
        else:
            record = encode_malformed(REPLAY_EPOCH, seq, received_at, stream_item)
        yield renderer.render(decode(record))


def _line(rendered: Rendered) -> bytes:
    message = rendered.message
    return orjson.dumps(
        {
            "routing_key": message.routing_key,
            "headers": message.headers,
            "body": orjson.Fragment(message.body),
        }
    )


async def _publish(
    all_rendered: list[Rendered], settings: Settings, url: str, tls: TlsOptions | None
) -> int:
    from bridge.publish.amqp import AmqpPublisher, Outcome
    from bridge.publish.broker import BrokerError

    publisher: AmqpPublisher[int] = AmqpPublisher(
        url, exchange=settings.exchange, window=settings.publish_window, tls=tls
    )
    try:
        await publisher.connect()
    except BrokerError as exc:
        print(f"ami-bridge replay: {exc}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    confirmed = 0

    async def collect() -> None:
        nonlocal confirmed
        async for batch in publisher.results():
            confirmed += sum(1 for r in batch if r.outcome is Outcome.CONFIRMED)

    collector = asyncio.create_task(collect())
    try:
        for index, rendered in enumerate(all_rendered):
            await publisher.publish(rendered.message, index)
    except BrokerError as exc:  # the connection dropped: the rest counts as not published
        print(f"ami-bridge replay: {exc}", file=sys.stderr)
    finally:
        await publisher.close(grace=30)
        await collector
    print(f"published {confirmed} of {len(all_rendered)} messages", file=sys.stderr)
    return int(ExitCode.OK if confirmed == len(all_rendered) else ExitCode.FAILURE)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        renderer = Renderer(
            Router(settings.server_id, settings.routing_key),
            include_raw=settings.include_raw,
            redact=settings.redact_headers,
        )
        # Checked now, so an unreadable password or CA file is a configuration error.
        url = settings.amqp_url_with_password() if args.publish else ""
        tls = settings.amqp_tls() if args.publish else None
        data = args.file.read_bytes()
    except (ConfigError, ValueError) as exc:
        print(f"ami-bridge replay: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    except OSError as exc:
        print(f"ami-bridge replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    configure_logging(settings.log_level)
    all_rendered = list(render_capture(data, renderer, time.time()))
    invalid = sum(1 for r in all_rendered if not r.valid)
    if invalid:
        print(f"ami-bridge replay: {invalid} message(s) went to the invalid route", file=sys.stderr)
    if not args.publish:
        out = sys.stdout.buffer
        try:
            for rendered in all_rendered:
                out.write(_line(rendered) + b"\n")
            out.flush()
        except BrokenPipeError:  # the reader (``| head``) is gone: stop quietly
            silence_stdout()
        return int(ExitCode.OK)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_publish(all_rendered, settings, url, tls))
