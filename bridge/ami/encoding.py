"""Encoding AMI messages: actions for the client, events and responses for the simulator.

Values are checked so that no key or value can inject a header or end a message early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bridge.ami.errors import LocalProtocolError
from bridge.ami.messages import Header

__all__ = ["HeaderInput", "serialize", "serialize_action"]

HeaderInput = Mapping[str, str | Sequence[str]] | Iterable[Header]


def _pairs(headers: HeaderInput) -> Iterable[Header]:
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if isinstance(value, str):
                yield key, value
            else:
                for item in value:
                    yield key, item
    else:
        yield from headers


def serialize(headers: HeaderInput) -> bytes:
    """Encode one AMI message (action, event or response) with CRLF line ends.

    Repeated keys are written in order: pass pairs, or a mapping whose value is a list.

    Raises:
        LocalProtocolError: a key is empty or holds ``:``, CR or LF, or a value holds CR
            or LF, which would let a value inject a header.
    """
    lines: list[str] = []
    for key, value in _pairs(headers):
        if not key or ":" in key or "\r" in key or "\n" in key:
            raise LocalProtocolError(f"illegal AMI header name {key!r}")
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"CR or LF in the value of AMI header {key!r}")
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"text that UTF-8 cannot carry: {exc.reason}") from exc


def serialize_action(
    action: str, headers: HeaderInput = (), *, action_id: str | None = None
) -> bytes:
    """Encode ``Action: <action>``, then ``ActionID`` when given, then ``headers``.

    Raises:
        LocalProtocolError: see :func:`serialize`.
    """
    pairs: list[Header] = [("Action", action)]
    if action_id is not None:
        pairs.append(("ActionID", action_id))
    pairs.extend(_pairs(headers))
    return serialize(pairs)
