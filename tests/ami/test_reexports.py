"""Names that moved to a module of their own stay importable from their first home."""

from __future__ import annotations

import importlib

import pytest

#: (first home, new home, names), both under ``bridge``.
MOVED = [
    ("ami.simulator", "ami.event_mask", "ALL_CLASSES PERMS class_mask parse_event_mask"),
    ("ami.traffic", "ami.shapes", "BUSY CALL CAUSES DIALPLAN DOWN RING RINGING SYSTEM UP"),
    ("ami.traffic", "ami.shapes", "Bridge Channel EventSpec LegacyShapes ModernShapes Shapes"),
    ("ami.traffic", "ami.shapes", "snapshot"),
    ("ami.client", "ami.actions", "ActionResult"),
    ("ami.session", "ami.listener", "Connected Disconnected SessionListener"),
    ("ami.session", "ami.login", "AuthMethod SecretSource"),
    ("publish.amqp", "publish.amqp_frames", "APP_ID CONTENT_TYPE PublishEncoder"),
    ("publish.amqp", "publish.broker", "BrokerAuthError BrokerError BrokerUnavailable"),
    ("publish.amqp", "publish.broker", "TlsOptions mask_url"),
]


@pytest.mark.parametrize(("old", "new", "names"), MOVED)
def test_the_old_module_exports_the_same_objects(old: str, new: str, names: str) -> None:
    first_home = importlib.import_module(f"bridge.{old}")
    new_home = importlib.import_module(f"bridge.{new}")
    for name in names.split():
        assert name in first_home.__all__
        assert getattr(first_home, name) is getattr(new_home, name)
