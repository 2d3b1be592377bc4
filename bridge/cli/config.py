"""``ami-bridge config``: the effective configuration, and where each value came from.

It takes the same flags, ``AMI_BRIDGE_*`` variables and TOML file as ``ami-bridge run``
and prints one line per setting, ``name = value  # source``, the source being ``flag``,
``env``, ``file`` or ``default`` (the highest that gave it).  Secrets are shown as
``***`` and passwords in broker URLs masked.  The settings are checked as ``run`` checks
them at start (secret and CA files read), so a wrong one exits 2 with one line and
nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import (
    ConfigError,
    add_settings_arguments,
    config_path,
    env_var,
    flag_values,
    settings_from_args,
    value_text,
)
from bridge.publish.broker import mask_url
from bridge.settings import AmiServer, Settings

__all__ = ["add_arguments", "describe", "run", "sources"]

_MASK = "***"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def sources(args: argparse.Namespace, config: Path | None) -> dict[str, str]:
    """Setting name -> where its effective value came from: flag, env, file or default."""
    flags = {name for name, value in flag_values(args).items() if value is not None}
    # pydantic-settings matches the variable names case-insensitively.
    environment = {key.upper() for key in os.environ}
    in_file: set[str] = set()
    if config is not None:
        in_file = set(tomllib.loads(config.read_text(encoding="utf-8")))
    found = {}
    for name in Settings.model_fields:
        if name in flags:
            found[name] = "flag"
        elif env_var(name) in environment:
            found[name] = "env"
        elif name in in_file:
            found[name] = "file"
        else:
            found[name] = "default"
    return found


def _shown(name: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return _MASK
    if value is None or value == []:
        return "none"
    if name == "amqp":
        return value_text([mask_url(url) for url in value])
    if name == "servers":
        return "; ".join(_server_text(server) for server in value) or "none"
    return value_text(value)


def _server_text(server: AmiServer) -> str:
    fields = server.model_dump(exclude_none=True)
    if "secret" in fields:
        fields["secret"] = _MASK
    return " ".join(f"{key}={value_text(value)}" for key, value in fields.items())


def describe(settings: Settings, origin: dict[str, str]) -> list[str]:
    """One ``name = value  # source`` line per setting, secrets masked."""
    return [
        f"{name} = {_shown(name, getattr(settings, name))}  # {origin[name]}"
        for name in Settings.model_fields
    ]


def _check_files(settings: Settings) -> None:
    """Read what ``run`` reads at start: the secret files and the CA bundle.

    Raises:
        ValueError: one of them cannot be used; the message names it.
    """
    settings.amqp_urls_with_password()
    settings.amqp_tls()
    for server in settings.resolved_servers():
        settings.ami_secret_for(server)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        config = config_path(args)
        _check_files(settings)
        origin = sources(args, config)
    except (ConfigError, ValueError) as exc:
        print(f"ami-bridge config: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    where = f"settings file {config}" if config is not None else "no settings file"
    print(f"# ami-bridge configuration ({where}); sources: flag > env > file > default")
    for line in describe(settings, origin):
        print(line)
    return int(ExitCode.OK)
