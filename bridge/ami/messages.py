"""AMI message values: what the parser yields, and how a message splits into headers.

A message keeps every header as an ordered ``(key, value)`` pair, so repeated keys
survive; lookups ignore case.  Messages from the parser hold their raw bytes and are
decoded and split on first access (see :mod:`bridge.ami.protocol` for why).

Values are kept exactly as sent, but for one: the name of an event or the status of a
response (the value of the first header) loses leading and trailing blanks, as
Asterisk's own parsers treat header values (``ast_skip_blanks`` and ``ast_trim_blanks``
in ``main/manager.c``: every byte below ``!``).  ``Event: Hangup `` is a Hangup.  The
exact bytes stay in ``raw``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import ClassVar, Self

__all__ = [
    "Banner",
    "CommandOutput",
    "Event",
    "Header",
    "Item",
    "Malformed",
    "Message",
    "Response",
    "decode",
    "split_headers",
    "split_headers_loosely",
    "strip_name",
]

Header = tuple[str, str]


class Message:
    """One AMI message: every header, in wire order, repeated keys included.

    A line without a colon is kept as a header whose key is ``""``.

    Messages from the parser are split into headers lazily, on first access, and keep the
    exact bytes they came from (``raw``, LF line ends): the reader task only frames and
    journals them, and the costly split happens once, on the consumer's side.
    """

    # A message from the parser sets only ``_raw``; the other slots fill on first access.
    __slots__ = ("_headers", "_invalid_utf8", "_raw")
    _headers: tuple[Header, ...]
    _invalid_utf8: bool
    _raw: bytes
    #: Whether the first header's value is a name (an event's, a response's status).
    _named: ClassVar[bool] = False

    def __init__(self, headers: Iterable[Header], invalid_utf8: bool = False) -> None:
        self._headers = tuple(headers)
        self._invalid_utf8 = invalid_utf8

    @classmethod
    def from_raw(cls, raw: bytes) -> Self:
        """A message over ``raw``: its header lines joined by LF, no blank line."""
        message = cls.__new__(cls)
        message._raw = raw
        return message

    @property
    def headers(self) -> tuple[Header, ...]:
        try:
            return self._headers
        except AttributeError:
            text, self._invalid_utf8 = decode(self._raw)
            headers = split_headers(text)
            self._headers = strip_name(headers) if self._named else headers
            return self._headers

    @property
    def invalid_utf8(self) -> bool:
        """True when the bytes were not valid UTF-8 (values then carry surrogate escapes)."""
        try:
            return self._invalid_utf8
        except AttributeError:
            self.headers  # noqa: B018 - decoding sets the flag
            return self._invalid_utf8

    @property
    def raw(self) -> bytes:
        """The message's bytes: header lines joined by LF, without the closing blank line."""
        try:
            return self._raw
        except AttributeError:
            lines = (f"{k}: {v}" if k else v for k, v in self.headers)
            self._raw = "\n".join(lines).encode("utf-8", "surrogateescape")
            return self._raw

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the first header named ``key`` (any case), or ``default``."""
        wanted = key.lower()
        for name, value in self.headers:
            if name.lower() == wanted:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of the headers named ``key`` (any case), in wire order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Message)
        return self.headers == other.headers and self.invalid_utf8 == other.invalid_utf8

    def __hash__(self) -> int:
        return hash((type(self), self.headers))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.headers!r})"


class Event(Message):
    """A message whose first key is ``Event``."""

    __slots__ = ()
    _named = True

    @property
    def name(self) -> str:
        return self.headers[0][1]


class Response(Message):
    """A message whose first key is ``Response`` (Success, Error, Goodbye, Follows)."""

    __slots__ = ()
    _named = True

    @property
    def status(self) -> str:
        return self.headers[0][1]

    @property
    def is_success(self) -> bool:
        return self.status.lower() in ("success", "follows", "goodbye")


class CommandOutput(Response):
    """A pre-14 ``Response: Follows`` reply: its headers and the raw CLI text."""

    __slots__ = ("output",)

    def __init__(
        self, headers: Iterable[Header], invalid_utf8: bool = False, output: str = ""
    ) -> None:
        super().__init__(headers, invalid_utf8)
        self.output = output

    def __eq__(self, other: object) -> bool:
        result = super().__eq__(other)
        return result if result is not True else self.output == other.output  # type: ignore[attr-defined]

    __hash__ = Message.__hash__


@dataclass(frozen=True, slots=True)
class Banner:
    """The server's first line, ``Asterisk Call Manager/11.0.0``."""

    line: str

    @property
    def version(self) -> str:
        return self.line.rpartition("/")[2].strip()


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message the parser could not deliver whole.  Keeps what was read, truncated."""

    reason: str
    data: bytes
    headers: tuple[Header, ...]


Item = Message | Banner | Malformed


def decode(data: bytes) -> tuple[str, bool]:
    """UTF-8, or surrogate escapes for bytes that are not (then the flag is True)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape"), True


def split_headers_loosely(block: str) -> tuple[Header, ...]:
    """Every line as a header; a line without a colon gets the empty key."""
    # The value loses exactly one leading space (Asterisk always writes ": "); more would
    # eat the indentation of Command output lines.
    headers: list[Header] = []
    for line in block.split("\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name, value[1:] if value.startswith(" ") else value))
        elif line or headers:
            # Blank lines before the first header are just extra separators.
            headers.append(("", line))
    return tuple(headers)


# Asterisk's blanks: ast_skip_blanks and ast_trim_blanks skip every byte below 33.
_BLANKS = "".join(map(chr, range(33)))


def strip_name(headers: tuple[Header, ...]) -> tuple[Header, ...]:
    """``headers`` with blanks stripped from the first value, the message's name."""
    if not headers:
        return headers
    key, value = headers[0]
    name = value.strip(_BLANKS)
    return headers if name == value else ((key, name), *headers[1:])


def split_headers(text: str) -> tuple[Header, ...]:
    """The headers of one LF-joined message."""
    lines = text.split("\n")
    # Fast path: every line is "Key: Value" with no colon in the key, as Asterisk writes.
    fast = [(k, v) for k, sep, v in map(str.partition, lines, repeat(": ")) if sep and ":" not in k]
    if len(fast) == len(lines):
        return tuple(fast)
    return split_headers_loosely(text)
