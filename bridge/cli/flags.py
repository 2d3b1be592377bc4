"""Command-line flags generated from :class:`bridge.settings.Settings`.

One flag per setting (``journal_dir`` -> ``--journal-dir``), so the flags, the environment
variables and the configuration reference can never drift apart.  Secret values have no
flag, only their ``*_file`` twin: a flag would show the secret in ``ps``.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from bridge.settings import ENV_PREFIX, Settings, load_settings

__all__ = [
    "ConfigError",
    "add_settings_arguments",
    "config_path",
    "env_var",
    "is_secret",
    "settings_from_args",
    "value_text",
]

#: Settings only a TOML file can express.
_FILE_ONLY = {"servers"}


class ConfigError(Exception):
    """A wrong setting, as one line for the operator."""


def is_secret(annotation: Any) -> bool:
    """Whether a setting of this type holds a secret (shown masked, never as a flag)."""
    return annotation is SecretStr or SecretStr in get_args(annotation)


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return ENV_PREFIX + name.upper()


def value_text(value: Any) -> str:
    """A setting's value as one types it: lists comma-separated, as the environment takes
    them, booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(value_text(item) for item in value)
    return str(value)


def _help(name: str, field: FieldInfo) -> str:
    """The flag's help: the description, the default and the environment variable."""
    default = field.get_default(call_default_factory=True)
    shown = value_text(default) if default not in (None, []) else "none"
    text = f"{field.description or ''} [default: {shown}; env {env_var(name)}]"
    return text.replace("%", "%%")  # argparse formats help texts with %


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settable_fields() -> dict[str, Any]:
    """Settings that have a flag: everything but secrets and TOML-only tables."""
    return {
        name: field
        for name, field in Settings.model_fields.items()
        if name not in _FILE_ONLY and not is_secret(field.annotation)
    }


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (also AMI_BRIDGE_CONFIG)", default=None
    )
    for name, field in settable_fields().items():
        help_text = _help(name, field)
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif get_origin(annotation) is list:
            parser.add_argument(_flag(name), dest=name, action="append", help=help_text)
        else:
            choices = get_args(annotation) if "Literal" in str(annotation) else None
            parser.add_argument(_flag(name), dest=name, choices=choices or None, help=help_text)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """Setting name -> the flag's value, None where the flag was not given."""
    return {name: getattr(args, name, None) for name in settable_fields()}


def config_path(args: argparse.Namespace) -> Path | None:
    """The TOML settings file: ``--config``, else ``AMI_BRIDGE_CONFIG``, else none.

    Raises:
        ConfigError: the file named does not exist.
    """
    config: Path | None = args.config
    if config is None:
        env_config = os.environ.get(env_var("config"))
        config = Path(env_config) if env_config else None
    if config is not None and not config.is_file():
        raise ConfigError(f"settings file {config} does not exist")
    return config


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags over environment over TOML file over defaults.

    Raises:
        ConfigError: a setting is wrong; the message is one line naming it.
    """
    overrides = flag_values(args)
    config = config_path(args)
    try:
        return load_settings(overrides, config)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        what = f"invalid setting {where}" if where else "invalid settings"
        raise ConfigError(f"{what}: {message}{more}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {config}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
