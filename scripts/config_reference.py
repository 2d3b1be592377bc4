"""Write ``docs/configuration.md``, the configuration reference, from the settings model.

Approach
--------
Nothing in the reference is typed by hand except its prose and the TOML example: setting
names, types, constraints, defaults and descriptions come from
:class:`bridge.settings.Settings` and :class:`bridge.settings.AmiServer`, and the flags
from the argument parser :mod:`bridge.cli.flags` builds, so the page cannot drift from the
code. ``tests/deploy/test_config_reference.py`` fails when the committed page differs from
:func:`render_reference`; ``python scripts/config_reference.py`` rewrites it (``--check``
only compares). Secret settings never show a default.

Usage: ``python scripts/config_reference.py [--check]``
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bridge.cli.flags import add_settings_arguments, env_var, is_secret, value_text
from bridge.settings import ENV_PREFIX, AmiServer, Settings

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
NO_VALUE = "—"

#: Shown in the reference and loaded by its test, so it is always a valid settings file.
TOML_EXAMPLE = """\
amqp = "amqp://ami-bridge@rabbitmq:5672/"
amqp_password_file = "/run/secrets/amqp_password"
exchange = "ami.events"
journal_dir = "/var/lib/ami-bridge/journal"
ami_secret_file = "/run/secrets/ami_secret"

[[servers]]
id = "pbx1"
url = "ami://bridge@10.0.0.1:5038"

[[servers]]
id = "pbx2"
url = "amis://bridge@pbx2.example.net:5039"
secret_file = "/run/secrets/pbx2_ami_secret"
ca_file = "/etc/ami-bridge/pbx-ca.pem"
"""

_SCALAR_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret",
}


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _type_name(annotation: Any) -> str:
    annotation = _without_none(annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return "list of tables" if item is AmiServer else f"list of {_type_name(item)}s"
    return _SCALAR_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraint_text(field: FieldInfo) -> str:
    bounds = {type(item): item for item in field.metadata}
    if Ge in bounds and Le in bounds:
        return f"{bounds[Ge].ge} to {bounds[Le].le}"
    parts = []
    if Gt in bounds:
        parts.append(f"> {bounds[Gt].gt}")
    if Ge in bounds:
        parts.append(f">= {bounds[Ge].ge}")
    if MinLen in bounds:
        parts.append("not empty")
    return ", ".join(parts)


def type_text(field: FieldInfo) -> str:
    """The type column: a plain-words type, then any bound the model enforces."""
    constraint = _constraint_text(field)
    name = _type_name(field.annotation)
    return f"{name}, {constraint}" if constraint else name


def default_text(field: FieldInfo) -> str:
    """The default column: empty for secrets, for ``None`` and for empty lists."""
    if is_secret(field.annotation) or field.is_required():
        return ""
    text = value_text(field.get_default(call_default_factory=True))
    return f"`{text}`" if text and text != "None" else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def flag_texts() -> dict[str, str]:
    """Setting name -> its flags as the real ``ami-bridge run`` parser defines them."""
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return {
        action.dest: ", ".join(f"`{flag}`" for flag in action.option_strings)
        # argparse keeps no public list of its actions.
        for action in parser._actions
        if action.option_strings
    }


def _settings_table() -> list[str]:
    flags = flag_texts()
    rows = [
        "| Setting | Flag | Environment variable | Type | Default | Description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        cells = (
            f"`{name}`",
            flags.get(name, NO_VALUE),
            f"`{env_var(name)}`",
            type_text(field),
            default_text(field),
            field.description or "",
        )
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def _server_description(name: str, field: FieldInfo) -> str:
    if field.description:
        return field.description
    if f"ami_{name}" in Settings.model_fields:
        return f"This server's own `ami_{name}`; the global one when unset."
    return ""


def _servers_table() -> list[str]:
    rows = ["| Key | Type | Required | Description |", "| --- | --- | --- | --- |"]
    for name, field in AmiServer.model_fields.items():
        cells = (
            f"`{name}`",
            type_text(field),
            "yes" if field.is_required() else "no",
            _server_description(name, field),
        )
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def render_reference() -> str:
    """The full text of ``docs/configuration.md``."""
    lines = [
        "<!-- Generated by scripts/config_reference.py from bridge/settings.py. Do not edit:",
        "     change the settings model, then run `python scripts/config_reference.py`. -->",
        "",
        "# Configuration reference",
        "",
        "Every setting of `ami-bridge run` comes, highest precedence first, from a "
        "command-line flag, an environment variable, a key of the TOML settings file, or "
        "its default.",
        "",
        f"- **Environment variables** are `{ENV_PREFIX}` followed by the setting's name in "
        "upper case. Lists are comma-separated "
        f"(`{env_var('ami')}=pbx1=ami://bridge@10.0.0.1:5038,pbx2=ami://bridge@10.0.0.2:5038`).",
        "- **Secrets** (the AMI secret, the AMQP password) have no flag, since a flag shows "
        "in `ps`: give them in the environment or, better, in a file named by the `*_file` "
        "setting. A file's trailing newline is ignored. No default or value of a secret is "
        "ever shown or logged.",
        "- **Booleans** take `true`/`false` in the environment and `--name`/`--no-name` as flags.",
        "",
        "## Settings",
        "",
        *_settings_table(),
        "",
        "## The TOML settings file",
        "",
        f"`--config FILE` or `{CONFIG_ENV}=FILE` names a TOML file whose top-level keys are "
        "the setting names above. Flags and environment variables override it. Settings that "
        "differ per PBX belong here: one `[[servers]]` table per PBX replaces the `ami` and "
        "`server_id` settings, and a server's own keys override the global `ami_*` ones.",
        "",
        "```toml",
        TOML_EXAMPLE.rstrip("\n"),
        "```",
        "",
        "Keys of a `[[servers]]` table:",
        "",
        *_servers_table(),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/configuration.md.")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file is out of date, write nothing"
    )
    args = parser.parse_args(argv)
    text = render_reference()
    current = REFERENCE_PATH.read_text(encoding="utf-8") if REFERENCE_PATH.exists() else None
    if args.check:
        if current != text:
            print(f"{REFERENCE_PATH} is out of date: run scripts/config_reference.py")
            return 1
        return 0
    if current != text:
        REFERENCE_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {REFERENCE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
