"""The broker URLs: several nodes, and the password setting filled in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yarl

from bridge.settings import load_settings


@pytest.mark.parametrize(
    ("url", "user", "host", "port"),
    [
        ("amqp://bridge@rabbit.example:5673/ami", "bridge", "rabbit.example", 5673),
        ("amqp://bridge@[::1]:5672/ami", "bridge", "::1", 5672),
        ("amqp://br%40dge@Rabbit/ami", "br@dge", "rabbit", None),
        ("amqp://[::1]/ami", "guest", "::1", None),
    ],
)
def test_the_password_setting_fills_in_the_url_and_keeps_user_host_and_port(
    url: str, user: str, host: str, port: int | None
) -> None:
    settings = load_settings({"amqp": url, "amqp_password": "p@ss word/"})
    parsed = yarl.URL(settings.amqp_url_with_password())
    assert (parsed.user, parsed.password, parsed.host, parsed.port) == (
        user,
        "p@ss word/",
        host,
        port,
    )
    assert parsed.path == "/ami"


NODES = ["amqp://bridge@rabbit1:5672/ami", "amqp://bridge@rabbit2:5672/ami"]


def test_the_broker_nodes_come_from_repeated_flags_the_environment_or_a_toml_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings({"amqp": NODES}).amqp == NODES
    monkeypatch.setenv("AMI_BRIDGE_AMQP", ", ".join(NODES))
    assert load_settings({}).amqp == NODES
    monkeypatch.delenv("AMI_BRIDGE_AMQP")
    config = tmp_path / "bridge.toml"
    config.write_text(f"amqp = {NODES!r}\namqp_endpoint_order = 'shuffled'\n".replace("'", '"'))
    settings = load_settings({}, config)
    assert settings.amqp == NODES
    assert settings.amqp_endpoint_order == "shuffled"


def test_the_password_setting_fills_in_every_node() -> None:
    settings = load_settings({"amqp": NODES, "amqp_password": "pw-1e9c"})
    urls = [yarl.URL(url) for url in settings.amqp_urls_with_password()]
    assert [(u.host, u.password) for u in urls] == [("rabbit1", "pw-1e9c"), ("rabbit2", "pw-1e9c")]
    assert "pw-1e9c" not in repr(settings)


def test_no_broker_node_is_a_setting_error() -> None:
    with pytest.raises(ValueError, match="at least one broker URL"):
        load_settings({"amqp": [" "]})
