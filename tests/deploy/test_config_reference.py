"""docs/configuration.md is exactly what scripts/config_reference.py generates now.

The script runs in-process; when this fails, run ``python scripts/config_reference.py``
and commit the result. The other tests check that the generated page tells the truth:
every setting has its row, secrets show no default, and the TOML example loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from bridge.settings import DEFAULT_EXCHANGE, ENV_PREFIX, Settings, load_settings
from tests.support.scripts import import_script

from . import REPO

reference = import_script(REPO / "scripts" / "config_reference.py", "config_reference")


def _rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in reference.render_reference().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows.setdefault(cells[0].strip("`"), cells)
    return rows


def test_committed_reference_is_up_to_date() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference.render_reference(), (
        "docs/configuration.md is stale: run python scripts/config_reference.py"
    )


def test_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--check"]) == 0
    assert capsys.readouterr().out == ""


def test_every_setting_has_a_row_with_its_environment_variable() -> None:
    rows = _rows()
    for name, field in Settings.model_fields.items():
        _, _flag, env, _type, _default, description = rows[name]
        assert env == f"`{ENV_PREFIX}{name.upper()}`"
        assert description == (field.description or "").replace("|", "\\|")


def test_flags_are_the_parsers_and_secrets_have_none() -> None:
    rows = _rows()
    assert rows["journal_dir"][1] == "`--journal-dir`"
    assert rows["amqp_tls_verify"][1] == "`--amqp-tls-verify`, `--no-amqp-tls-verify`"
    assert rows["ami_secret"][1] == reference.NO_VALUE
    assert rows["amqp_password"][1] == reference.NO_VALUE


def test_defaults_and_types_are_rendered_from_the_model() -> None:
    rows = _rows()
    assert rows["exchange"][4] == f"`{DEFAULT_EXCHANGE}`"
    assert rows["exchange"][3] == "string, not empty"
    assert rows["metrics_port"][3] == "integer, 0 to 65535"
    assert rows["ami_auth"][3] == "one of `md5`, `plain`"
    assert rows["include_raw"][4] == "`false`"
    assert rows["ami_ping_interval"][4] == "`20`"
    assert rows["ami_secret_file"][4] == ""


def test_a_secret_never_shows_its_default() -> None:
    class WithSecretDefault(BaseModel):
        token: SecretStr = Field(SecretStr("hunter2"), description="A secret.")

    field = WithSecretDefault.model_fields["token"]
    assert reference.default_text(field) == ""
    assert "hunter2" not in reference.type_text(field)


def test_toml_example_is_a_valid_settings_file(tmp_path: Path) -> None:
    assert reference.TOML_EXAMPLE in reference.render_reference()
    config = tmp_path / "ami-bridge.toml"
    config.write_text(reference.TOML_EXAMPLE, encoding="utf-8")
    settings = load_settings({}, config)
    assert [server.id for server in settings.resolved_servers()] == ["pbx1", "pbx2"]
    assert settings.exchange == DEFAULT_EXCHANGE
    assert str(settings.journal_dir) == "/var/lib/ami-bridge/journal"


def test_server_table_keys_are_the_model_fields() -> None:
    from bridge.settings import AmiServer

    text = reference.render_reference()
    servers_section = text[text.index("Keys of a `[[servers]]` table") :]
    for name in AmiServer.model_fields:
        assert f"| `{name}` |" in servers_section
