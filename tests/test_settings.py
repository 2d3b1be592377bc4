"""The broker URL with the password setting filled in."""

from __future__ import annotations

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
