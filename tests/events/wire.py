"""Helpers for the event tests: AMI wire text in, parsed items out."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.protocol import AmiParser, Event, Item

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
