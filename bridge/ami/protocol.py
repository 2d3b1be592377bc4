"""The AMI wire protocol as a sans-I/O state machine: bytes in, messages out.

Strategy
--------
AMI frames are ``Key: Value`` lines closed by a blank line.  Python pays per object, not
per byte, so the parser works on *runs* of complete messages with C-level bytes operations:

1. ``feed`` appends to one buffer and looks (from where the last look stopped, so a
   trickle is never rescanned) for the *last* blank line in it.  Everything before that
   is a run of complete messages.
2. The run is normalised to bare LF and split on blank lines.  Each piece becomes a
   message typed by its first key, with size and header-count limits checked on the
   bytes.  No per-line work happens on the read path.
3. A message is decoded and split into ``(key, value)`` headers on first access, by one
   compiled regex call; a message with a line the regex does not explain (a line with
   no colon) takes a slow path that keeps that line as a header with the empty key
   ``""``.  Decoding a whole message at once, never a TCP chunk, is what keeps a
   multibyte character split across reads intact.

Decoding choice: UTF-8 with ``surrogateescape``.  Asterisk has no charset handling and
sends C strings as raw bytes; ``surrogateescape`` never fails and round-trips the exact
bytes (``value.encode("utf-8", "surrogateescape")``).  Such a message has
``invalid_utf8=True`` so later stages can decide how to present it.

Two framing cases break the blank-line rule and get readers of their own: the banner
(one line, no blank line after it) and the pre-14 ``Response: Follows`` command output,
raw text that may itself hold blank lines, up to ``--END COMMAND--``.

Limits: a message over ``max_message_size`` bytes or ``max_headers`` headers is never
dropped silently.  The parser yields a :class:`Malformed` item with what was read
(truncated to the limit) and resynchronises at the next blank line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum

from bridge.ami.encoding import HeaderInput, serialize, serialize_action
from bridge.ami.errors import LocalProtocolError
from bridge.ami.messages import (
    Banner,
    CommandOutput,
    Event,
    Header,
    Item,
    Malformed,
    Message,
    Response,
    decode,
    split_headers_loosely,
)

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AmiParser",
    "Banner",
    "CommandOutput",
    "Event",
    "Header",
    "HeaderInput",
    "Item",
    "Malformed",
    "Message",
    "ParserState",
    "Response",
    "serialize",
    "serialize_action",
]


#: Asterisk's own output has no size cap, so these are generous: a ``channelvars`` setting
#: can repeat ChanVariable hundreds of times, and EndpointDetail or UserEvent bodies are big.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_HEADERS = 10_000

_FOLLOWS_RE = re.compile(rb"(?:\A|\n\r?\n)(Response:[ \t]*Follows)[ \t]*\r?\n", re.IGNORECASE)
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_END_COMMAND_RE = re.compile(rb"--END COMMAND--[ \t]*\r?\n(?:\r?\n)?")
_LEGACY_COMMAND_HEADERS = frozenset({"response", "privilege", "actionid"})


class ParserState(Enum):
    #: Waiting for the one-line banner.
    BANNER = "banner"
    #: Reading blank-line-terminated ``Key: Value`` messages.
    HEADERS = "headers"
    #: Inside a pre-14 ``Response: Follows`` reply, up to ``--END COMMAND--``.
    COMMAND_OUTPUT = "command_output"
    #: After an oversize message: skipping to the next blank line.
    DISCARD = "discard"
    #: ``feed_eof`` was called.
    CLOSED = "closed"


_KINDS: dict[bytes, type[Message]] = {b"event": Event, b"response": Response}


def _classify(raw: bytes) -> Message:
    """Pick the message type from the first key: ``OriginateResponse`` is an event that
    carries a ``Response`` key, so only the first key decides."""
    colon = raw.find(b":", 0, 16)
    kind = _KINDS.get(raw[:colon].lower(), Message) if colon > 0 else Message
    return kind.from_raw(raw)


class AmiParser:
    """Incremental AMI parser.

    ``feed(data)`` returns every item completed so far; any split of the same byte
    stream into chunks yields the same items.  ``feed_eof()`` flushes a trailing partial
    message as :class:`Malformed`.  Input never makes the parser raise.
    """

    def __init__(
        self,
        *,
        expect_banner: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        if max_message_size < 16 or max_headers < 1:
            raise ValueError("max_message_size must be >= 16 and max_headers >= 1")
        self.max_message_size = max_message_size
        self.max_headers = max_headers
        self.state = ParserState.BANNER if expect_banner else ParserState.HEADERS
        self.banner: Banner | None = None
        self._buf = bytearray()
        self._scanned = 0

    # -- public API -------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Item]:
        """Buffer ``data`` and return the items it completed."""
        if self.state is ParserState.CLOSED:
            raise LocalProtocolError("feed() after feed_eof()")
        self._buf += data
        out: list[Item] = []
        while self._READERS[self.state](self, out):
            pass
        return out

    def feed_eof(self) -> list[Item]:
        """Signal end of stream; a partial message left in the buffer becomes Malformed."""
        out: list[Item] = []
        if self.state is not ParserState.CLOSED:
            leftover = bytes(self._buf)
            if leftover.strip() and self.state is not ParserState.DISCARD:
                out.append(self._malformed("stream ended inside a message", leftover))
            self._buf.clear()
            self.state = ParserState.CLOSED
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buf)

    # -- readers, one per state; each returns True while it made progress ----------------

    def _read_banner(self, out: list[Item]) -> bool:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > self.max_message_size:
                self.state = ParserState.HEADERS
                return True
            return False
        line, _ = decode(bytes(self._buf[:end]).rstrip(b"\r"))
        if ":" in line or not line.strip():
            # No banner (a proxy, or a server that starts talking at once): parse as AMI.
            self.state = ParserState.HEADERS
            return True
        del self._buf[: end + 1]
        self.banner = Banner(line)
        out.append(self.banner)
        self.state = ParserState.HEADERS
        return True

    def _read_headers(self, out: list[Item]) -> bool:
        buf = self._buf
        start = max(0, self._scanned - 2)
        lf, crlf = buf.rfind(b"\n\n", start), buf.rfind(b"\n\r\n", start)
        if lf < 0 and crlf < 0:
            self._scanned = len(buf)
            if len(buf) > self.max_message_size:
                self._overflow(out)
                return True
            return False
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        run = bytes(buf[:end])
        if (b"ollows" in run or b"OLLOWS" in run) and (m := _FOLLOWS_RE.search(run)):
            # Raw command output may hold blank lines: hand it to its own reader.
            begin = m.start(1)
            self._emit_run(run[:begin], out)
            del buf[:begin]
            self._scanned = 0
            self.state = ParserState.COMMAND_OUTPUT
            return True
        del buf[:end]
        self._scanned = 0
        self._emit_run(run, out)
        return True

    def _read_command_output(self, out: list[Item]) -> bool:
        m = _END_COMMAND_RE.search(self._buf)
        if m is None:
            if len(self._buf) > self.max_message_size:
                self._overflow(out)
                return True
            return False
        block, invalid = decode(bytes(self._buf[: m.start()]).replace(b"\r\n", b"\n"))
        del self._buf[: m.end()]
        self.state = ParserState.HEADERS
        lines = block.split("\n")
        count = 0
        for line in lines:
            if line.partition(":")[0].strip().lower() not in _LEGACY_COMMAND_HEADERS:
                break
            count += 1
        headers = split_headers_loosely("\n".join(lines[:count]))
        out.append(CommandOutput(headers, invalid, "\n".join(lines[count:])))
        return True

    def _read_discard(self, out: list[Item]) -> bool:
        buf = self._buf
        ends = [i for i in (buf.find(b"\n\n"), buf.find(b"\n\r\n")) if i >= 0]
        if not ends:
            # Keep two bytes: a blank line may straddle this read and the next.
            del buf[:-2]
            return False
        first = min(ends)
        del buf[: first + (2 if buf[first + 1 : first + 2] == b"\n" else 3)]
        self._scanned = 0
        self.state = ParserState.HEADERS
        return True

    def _read_closed(self, out: list[Item]) -> bool:
        return False

    _READERS: dict[ParserState, Callable[[AmiParser, list[Item]], bool]] = {
        ParserState.BANNER: _read_banner,
        ParserState.HEADERS: _read_headers,
        ParserState.COMMAND_OUTPUT: _read_command_output,
        ParserState.DISCARD: _read_discard,
        ParserState.CLOSED: _read_closed,
    }

    # -- helpers ----------------------------------------------------------------------

    def _emit_run(self, run: bytes, out: list[Item]) -> None:
        """Turn a run of complete messages into items (split into headers later, lazily)."""
        text = run.replace(b"\r\n", b"\n")
        blocks = text.split(b"\n\n")
        if b"\n\n\n" in text or text.startswith(b"\n"):
            # Extra blank lines between messages carry nothing; drop them.
            blocks = [block.strip(b"\n") for block in blocks]
        if len(text) <= self.max_message_size and text.count(b"\n") < self.max_headers:
            # No message in this run can be over a limit: skip the per-message checks.
            out.extend(
                [Event.from_raw(b) if b[:7] == b"Event: " else _classify(b) for b in blocks if b]
            )
            return
        # Split the wire bytes themselves so an oversize message keeps exactly what a
        # streaming read would have kept, however the stream was chunked.
        for wire in _BLANK_LINE_RE.split(run):
            raw = wire.replace(b"\r\n", b"\n").strip(b"\n")
            if not raw:
                continue
            if len(wire.lstrip(b"\r\n")) > self.max_message_size:
                out.append(self._oversize(wire.lstrip(b"\r\n")))
            elif raw.count(b"\n") >= self.max_headers:
                count = raw.count(b"\n") + 1
                reason = f"message has {count} headers, over max_headers={self.max_headers}"
                out.append(self._malformed(reason, wire.lstrip(b"\r\n")))
            else:
                out.append(_classify(raw))

    def _oversize(self, wire: bytes) -> Malformed:
        return self._malformed(
            f"message exceeds max_message_size ({self.max_message_size} bytes)", wire
        )

    def _malformed(self, reason: str, raw: bytes) -> Malformed:
        kept = raw[: self.max_message_size]
        block, _ = decode(kept.replace(b"\r\n", b"\n").strip(b"\n"))
        return Malformed(
            reason, kept, split_headers_loosely(block)[: self.max_headers] if block else ()
        )

    def _overflow(self, out: list[Item]) -> None:
        out.append(self._oversize(bytes(self._buf).lstrip(b"\r\n")))
        self._buf.clear()
        self._scanned = 0
        self.state = ParserState.DISCARD
