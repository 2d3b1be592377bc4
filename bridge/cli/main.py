"""Entry point for ``ami-bridge`` and ``python -m bridge``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``.  Modules are imported only when their subcommand is chosen, so
``ami-bridge simulate`` never pays for pydantic or aio-pika imports it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from bridge import __version__
from bridge.cli.exit_codes import ExitCode

#: subcommand -> (module, one-line help). The module implements the subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bridge.cli.run", "bridge AMI events to RabbitMQ"),
    "demo": ("bridge.cli.demo", "run the simulator and the bridge, and show the live stream"),
    "replay": ("bridge.cli.replay", "send a raw AMI capture through the bridge's pipeline"),
    "simulate": ("bridge.cli.simulate", "serve simulated AMI traffic on loopback"),
    "schemas": ("bridge.cli.schemas", "write the JSON Schemas and AsyncAPI document"),
    "tail": ("bridge.cli.tail", "show the messages on the bus, live, one line each"),
    "healthcheck": ("bridge.cli.healthcheck", "exit 0 if the bridge's /healthz answers 200"),
    "action": ("bridge.cli.action", "run an AMI action on a PBX through the bridge"),
    "config": ("bridge.cli.config", "print the effective settings and where each came from"),
}

DESCRIPTION = (
    "ami-bridge reads the Asterisk Manager Interface (AMI) of one or more PBXs, journals "
    "every event to disk and publishes it, typed and validated, as JSON to a RabbitMQ "
    "topic exchange ({server}.{class}.{event}), retired only by a publisher confirm."
)
EPILOG = (
    "Settings come from flags, AMI_BRIDGE_* environment variables or a TOML file "
    "(--config); 'ami-bridge COMMAND --help' lists a command's, 'ami-bridge config' shows "
    "the effective ones. Start with 'ami-bridge demo' (needs RabbitMQ on 127.0.0.1:5672)."
)


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ami-bridge", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ami-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    try:
        return _load(args.command).run(args)
    except KeyboardInterrupt:
        return int(ExitCode.FORCED)
