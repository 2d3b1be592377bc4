"""AMI wire text for the event tests: parsed items out, and a full message per model."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

from pydantic.fields import FieldInfo

from bridge.ami.protocol import AmiParser, Event, Item, serialize
from bridge.events import AmiEvent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAPTURES = sorted((FIXTURES / "captures").glob("*.ami"))


def parse_items(data: bytes, *, banner: bool = False) -> list[Item]:
    """Every item of ``data``, end of stream included."""
    parser = AmiParser(expect_banner=banner)
    return parser.feed(data) + parser.feed_eof()


def parse_events(data: bytes, *, banner: bool = False) -> list[Event]:
    return [item for item in parse_items(data, banner=banner) if isinstance(item, Event)]


def parse_event(text: str | bytes) -> Event:
    """The one event in ``text``; lines may end in LF, CRLF is added."""
    data = text.encode() if isinstance(text, str) else text
    if b"\r\n" not in data:
        data = data.replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n\r\n"):
        data += b"\r\n" if data.endswith(b"\r\n") else b"\r\n\r\n"
    (event,) = parse_events(data)
    return event


def plausible_value(name: str, info: FieldInfo) -> str:
    """A wire value that fits the field's type: its first documented value, 42 or text."""
    for leaf in typing.get_args(info.annotation) or (info.annotation,):
        if typing.get_origin(leaf) is Literal:
            return str(typing.get_args(leaf)[0])
    if int in (typing.get_args(info.annotation) or (info.annotation,)):
        return "42"
    return f"value of {info.alias or name}"


def full_message(model: type[AmiEvent]) -> bytes:
    """One message of ``model``'s event carrying every field with a plausible value."""
    headers = [("Event", model.event_name), ("Privilege", f"{model.privilege_class},all")]
    headers += [
        (info.alias or name, plausible_value(name, info))
        for name, info in model.model_fields.items()
    ]
    return serialize(headers)
