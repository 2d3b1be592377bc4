"""``ami-bridge action``: run one AMI action on a PBX through a running bridge.

``ami-bridge action pbx1 QueueStatus Queue=support`` publishes an action request to the
bridge's request exchange (``rpc_exchange``) and prints the bridge's reply as JSON:
indented on a terminal, one line otherwise.  ``KEY=VALUE`` may repeat a key
(``Variable=a=1 Variable=b=2``), which sends the header once per value, in order; the
value is everything after the first ``=``.

The broker, its password and the exchange come from the same settings as the bridge's
(flags, ``AMI_BRIDGE_*`` variables, the TOML file).  Without ``--timeout`` the client
waits the bridge's ``rpc_timeout`` plus five seconds.

``--correlation VALUE`` sends the client's own value inside the ActionID
(``amib-<n>/VALUE``); the reply's ``action_id`` is the ActionID the bridge used.
``--wait`` (Originate only; it sends ``Async: true`` unless told otherwise) binds to the
event exchange before sending, then waits up to ``--wait-timeout`` seconds for the
``OriginateResponse`` carrying that ActionID and prints it after the reply.

Exit codes: 0 the action succeeded (with ``--wait``: and the OriginateResponse says
Success); 1 an error reply (printed like any reply), a failed origination, or the
request could not be delivered (no bridge, no broker); 2 a usage error, nothing sent;
3 no reply, or no OriginateResponse, in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, settings_from_args
from bridge.cli.run import configure_logging, new_event_loop
from bridge.consumer import ActionOutcome, ConsumerError, OutcomeEvent
from bridge.events.headers import add_value
from bridge.events.rpc import ActionReply
from bridge.publish.broker import BrokerError
from bridge.service.rpc_client import ActionClient, NoReply, RpcClientError, prepare_request
from bridge.settings import Settings

__all__ = ["NO_REPLY", "add_arguments", "parse_headers", "print_reply", "run"]

#: Exit code when no reply came within the timeout.
NO_REPLY = 3
#: Seconds the client waits beyond the bridge's own action timeout.
_TIMEOUT_SLACK = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", help="server id of the PBX, e.g. pbx1")
    parser.add_argument("action", help="AMI action, e.g. QueueStatus")
    parser.add_argument(
        "headers",
        nargs="*",
        metavar="KEY=VALUE",
        help="an action header; repeat a key to send it several times",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the reply (default: the bridge's rpc_timeout + 5)",
    )
    parser.add_argument(
        "--correlation",
        default=None,
        metavar="VALUE",
        help="your own correlation value, sent inside the ActionID (letters, digits, ._:@-)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="Originate: wait for its OriginateResponse on the event exchange and print it",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=60.0,
        help="seconds --wait waits for the OriginateResponse after the reply (default 60)",
    )
    parser.add_argument("--amqp", default=None, help="broker URL (default: the bridge's)")
    parser.add_argument(
        "--events-exchange",
        dest="exchange",
        default=None,
        help="event exchange --wait listens on (default: the bridge's exchange)",
    )
    parser.add_argument(
        "--exchange",
        dest="rpc_exchange",
        default=None,
        help="request exchange (default: the bridge's rpc_exchange, ami.actions)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (also AMI_BRIDGE_CONFIG)"
    )


def parse_headers(pairs: Sequence[str]) -> dict[str, str | list[str]]:
    """``["Queue=support", "Variable=a=1", "Variable=b=2"]`` -> a header object.

    Raises:
        ValueError: an item has no ``=`` or an empty key.
    """
    headers: dict[str, str | list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"header {pair!r} is not KEY=VALUE")
        add_value(headers, key, value)
    return headers


def print_reply(reply: ActionReply, out: TextIO) -> None:
    """The reply as JSON: indented on a terminal, one line otherwise."""
    document = reply.model_dump(mode="json", exclude_none=True)
    indent = 2 if out.isatty() else None
    print(json.dumps(document, indent=indent, ensure_ascii=False), file=out, flush=True)


async def call(
    settings: Settings,
    server: str,
    action: str,
    headers: dict[str, str | list[str]],
    timeout: float,  # noqa: ASYNC109 - the reply's deadline, passed on
    correlation: str | None = None,
) -> ActionReply:
    """Connect, send the request, return the reply.

    Raises:
        RpcClientError: not delivered, or no reply in time (:class:`NoReply`).
        BrokerError: the broker cannot be used.
    """
    client = ActionClient(
        settings.amqp_url_with_password(), exchange=settings.rpc_exchange, tls=settings.amqp_tls()
    )  # amqp_tls() was checked by run()
    async with client:
        return await client.call(server, action, headers, timeout=timeout, correlation=correlation)


async def call_and_wait(
    settings: Settings,
    server: str,
    headers: dict[str, str | list[str]],
    timeout: float,  # noqa: ASYNC109 - the reply's deadline, passed on
    wait_timeout: float,
    correlation: str | None = None,
) -> tuple[ActionReply, OutcomeEvent | None]:
    """An Originate, and its OriginateResponse (None when the reply is an error).

    Raises:
        RpcClientError, BrokerError: as :func:`call`.
        ConsumerError: the event exchange cannot be used.
        TimeoutError: no OriginateResponse within ``wait_timeout`` seconds of the reply.
    """
    url = settings.amqp_url_with_password()
    async with ActionOutcome(url, server=server, exchange=settings.exchange) as outcome:
        reply = await call(settings, server, "Originate", headers, timeout, correlation)
        if not reply.ok or reply.action_id is None:
            return reply, None
        return reply, await outcome.wait(reply.action_id, wait_timeout)


def print_event(event: OutcomeEvent, out: TextIO) -> None:
    """The event's body as JSON, like a reply."""
    indent = 2 if out.isatty() else None
    document = json.loads(event.body)
    print(json.dumps(document, indent=indent, ensure_ascii=False), file=out, flush=True)


def _async_headers(action: str, headers: dict[str, str | list[str]]) -> None:
    """Check ``--wait`` fits the request; add ``Async: true`` when it is not given.

    Raises:
        ValueError: not an Originate, or an Originate that is not async.
    """
    if action.lower() != "originate":
        raise ValueError("--wait is for Originate: other actions answer in their reply")
    given = [key for key in headers if key.lower() == "async"]
    if not given:
        headers["Async"] = "true"
    elif str(headers[given[0]]).lower() not in ("true", "yes", "1", "on"):
        raise ValueError(
            "--wait needs an async Originate (Async=true): a sync one has no OriginateResponse"
        )


def _usage_error(message: str) -> int:
    print(f"ami-bridge action: {message}", file=sys.stderr)
    return int(ExitCode.CONFIG_ERROR)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        headers = parse_headers(args.headers)
        if args.wait:
            _async_headers(args.action, headers)
            if args.wait_timeout <= 0:
                raise ValueError("--wait-timeout must be above 0")
        # nothing invalid is sent
        prepare_request(args.server, args.action, headers, args.correlation)
        settings.amqp_tls()  # an unusable CA file is a usage error, before connecting
    except (ConfigError, ValueError) as exc:
        return _usage_error(str(exc))
    if not settings.rpc_exchange:
        return _usage_error("rpc_exchange is empty: the bridge takes no action requests")
    timeout = args.timeout if args.timeout is not None else settings.rpc_timeout + _TIMEOUT_SLACK
    if timeout <= 0:
        return _usage_error("--timeout must be above 0")
    # aiormq logs a failed connect before raising it; the error is reported once, below.
    configure_logging("WARNING", library_level="CRITICAL")
    event: OutcomeEvent | None = None
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            if args.wait:
                reply, event = runner.run(
                    call_and_wait(
                        settings, args.server, headers, timeout, args.wait_timeout, args.correlation
                    )
                )
            else:
                reply = runner.run(
                    call(settings, args.server, args.action, headers, timeout, args.correlation)
                )
        except NoReply as exc:
            print(f"ami-bridge action: {exc}", file=sys.stderr)
            return NO_REPLY
        except TimeoutError:
            print(
                f"ami-bridge action: no OriginateResponse within {args.wait_timeout:g} s",
                file=sys.stderr,
            )
            return NO_REPLY
        except (RpcClientError, BrokerError, ConsumerError, OSError) as exc:
            print(f"ami-bridge action: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)
    print_reply(reply, sys.stdout)
    if event is not None:
        print_event(event, sys.stdout)
        succeeded = getattr(event.message.fields, "Response", None) == "Success"
        return int(ExitCode.OK if succeeded else ExitCode.FAILURE)
    return int(ExitCode.OK if reply.ok else ExitCode.FAILURE)
