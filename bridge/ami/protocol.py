"""The AMI wire protocol as a sans-I/O state machine: bytes in, messages out.

Framing
-------
AMI frames are ``Key: Value`` lines closed by a blank line.  Lines end in CRLF or a bare
LF; blank lines between messages carry nothing.  Two framings break that rule and get
readers of their own:

* the banner, one line with no blank line after it (``Asterisk Call Manager/11.0.0``):
  the first line of the stream when it has at most 100 bytes and no colon;
* the reply to ``Command`` on Asterisk 13 and older: a message whose first line is
  ``Response: Follows`` (the key in any case, up to 16 blanks around the value, the
  value as ``Follows``, ``follows`` or ``FOLLOWS``), then ``Privilege``/``ActionID``
  lines and raw CLI text that may hold blank lines, up to ``--END COMMAND--`` and the
  end of its line.  The marker need not start a line: Asterisk writes it straight after
  the CLI text, which does not always end in a newline.  The blank line Asterisk sends
  after it is an ordinary blank line between messages.

The size of a message
---------------------
A message's size is the length of its bytes with each CRLF counted as one byte, from its
first byte up to its terminator, which is not counted.  For a ``Key: Value`` message the
terminator is the line end of its last line plus the blank line, so the size is exactly
``len(message.raw)``; blank lines before a message belong to no message.  For a
``Response: Follows`` reply the terminator is the ``--END COMMAND--`` line.  A message
over ``max_message_size`` by this measure, or a ``Key: Value`` message of more than
``max_headers`` lines, becomes a :class:`Malformed` item holding its first
``max_message_size`` bytes (LF line ends, as ``Message.raw``), and the parser goes on
after that message's terminator.  The CLI text of a reply is one value, not headers:
``max_headers`` does not apply to it.

The verdict is the same however the stream is cut into reads, and whatever shares a read:
a message still arriving is declared too big only once the bytes already held prove that
its size will exceed the limit, so the parser buffers at most about
``max_message_size`` bytes (plus one read) for it.

Strategy
--------
Python pays per object, not per byte, so the parser works on *runs* of complete messages
with C-level bytes operations:

1. ``feed`` appends to one buffer and looks (from where the last look stopped, as h11's
   receive buffer does, so a trickle is never rescanned) for the *last* blank line in
   it.  Everything before that is a run of complete messages.
2. The run is normalised to bare LF and split on blank lines.  Each piece becomes a
   message typed by its first key, with the limits checked on its bytes.  No per-line
   work happens on the read path.
3. A message is decoded and split into ``(key, value)`` headers on first access
   (:mod:`bridge.ami.messages`).  Decoding a whole message at once, never a TCP chunk, is
   what keeps a multibyte character split across reads intact.

Every search remembers how far it got: the terminator scan, the ``--END COMMAND--``
scan and the count of CRLFs behind the size of a message still arriving.  So the work is
linear in the bytes fed, however small the reads (``bench/parse.py`` measures a 2.8 MB
legacy reply fed in 256-byte reads).

Decoding choice: UTF-8 with ``surrogateescape``.  Asterisk has no charset handling and
sends C strings as raw bytes; ``surrogateescape`` never fails and round-trips the exact
bytes (``value.encode("utf-8", "surrogateescape")``).  Such a message has
``invalid_utf8=True`` so later stages can decide how to present it.
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
    strip_name,
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

#: Longest first line (line end excluded) that can be a banner; Asterisk's is ~30 bytes.
_BANNER_MAX = 100
#: Blanks tolerated around ``Follows`` and after ``--END COMMAND--`` (Asterisk sends none).
#: A bound keeps the wait for the end of such a line, and its buffer, bounded too.
_BLANKS = rb"[ \t]{0,16}"
# "Follows" only in the spellings with "ollows" or "OLLOWS" in them, so that a cheap
# substring test rules out every run of messages without one.
_FOLLOWS = rb"(?i:response):" + _BLANKS + rb"(?:[Ff]ollows|FOLLOWS)" + _BLANKS + rb"\r?\n"
_FOLLOWS_LINE = re.compile(_FOLLOWS)
#: A Follows line at a message boundary inside a run: after a line end and blank lines.
_FOLLOWS_IN_RUN = re.compile(rb"\n(?:\r?\n)+(" + _FOLLOWS + rb")")
#: The longest Follows line: a first line without a line end in this many bytes is not one.
_FOLLOWS_LINE_MAX = len(b"Response:") + 16 + len(b"Follows") + 16 + len(b"\r\n")
_BLANK_LINES = re.compile(rb"(?:\r?\n)+")
_END_COMMAND = b"--END COMMAND--"
# Group 1 is set when the buffer ends before the marker's line end has arrived.
_END_COMMAND_RE = re.compile(re.escape(_END_COMMAND) + _BLANKS + rb"(?:\r?\n|(\r?\Z))")
_LEGACY_COMMAND_HEADERS = frozenset({"response", "privilege", "actionid"})


class ParserState(Enum):
    #: Nothing consumed yet: the first line may be the banner.
    BANNER = "banner"
    #: Reading blank-line-terminated ``Key: Value`` messages.
    HEADERS = "headers"
    #: The buffered message is a pre-14 ``Response: Follows`` reply, read up to
    #: ``--END COMMAND--``.
    COMMAND_OUTPUT = "command_output"
    #: After an oversize message: skipping to the next blank line.
    DISCARD = "discard"
    #: After an oversize ``Response: Follows`` reply: skipping to ``--END COMMAND--``.
    DISCARD_COMMAND_OUTPUT = "discard_command_output"
    #: ``feed_eof`` was called.
    CLOSED = "closed"


_KINDS: dict[bytes, type[Message]] = {b"event": Event, b"response": Response}


def _classify(raw: bytes) -> Message:
    """Pick the message type from the first key: ``OriginateResponse`` is an event that
    carries a ``Response`` key, so only the first key decides."""
    colon = raw.find(b":", 0, 16)
    kind = _KINDS.get(raw[:colon].lower(), Message) if colon > 0 else Message
    return kind.from_raw(raw)


def _command_output(block: bytes) -> CommandOutput:
    """A ``Response: Follows`` reply from its bytes before ``--END COMMAND--`` (LF ends)."""
    text, invalid = decode(block)
    lines = text.split("\n")
    count = 0
    for line in lines:
        if line.partition(":")[0].strip().lower() not in _LEGACY_COMMAND_HEADERS:
            break
        count += 1
    headers = strip_name(split_headers_loosely("\n".join(lines[:count])))
    return CommandOutput(headers, invalid, "\n".join(lines[count:]))


class AmiParser:
    """Incremental AMI parser.

    ``feed(data)`` returns every item completed so far; any split of the same byte
    stream into chunks yields the same items.  ``feed_eof()`` flushes a trailing partial
    message as :class:`Malformed`.  Input never makes the parser raise.

    The parser holds the stream in two parts: the bytes it has consumed (turned into
    items, or skipped after a :class:`Malformed`) and the ``buffered`` bytes of a message
    not complete yet.  Its state depends only on the consumed bytes: nothing it learns
    while looking at the buffered ones is kept, except how far it has searched them, a
    hint it drops as soon as the buffer is shorter than that.  So a caller may drop any
    number of the last buffered bytes and feed them again later: the items are the
    same as if they had been fed once.
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
        self._state = ParserState.BANNER if expect_banner else ParserState.HEADERS
        self.banner: Banner | None = None
        self._buf = bytearray()
        # How far the buffer has been searched, for the reader of the current state:
        # bytes up to ``_scanned`` hold no blank line (HEADERS, DISCARD); no
        # ``--END COMMAND--`` line starts before ``_marker_scan``.
        self._scanned = 0
        self._marker_scan = 0
        # The number of CRLFs in ``_buf[:_crlf_upto]``, for the size of a message still
        # arriving.
        self._crlfs = 0
        self._crlf_upto = 0

    # -- public API -------------------------------------------------------------------

    @property
    def state(self) -> ParserState:
        """What the parser is reading now."""
        if self._state is ParserState.HEADERS and _FOLLOWS_LINE.match(self._buf):
            return ParserState.COMMAND_OUTPUT
        return self._state

    def feed(self, data: bytes) -> list[Item]:
        """Buffer ``data`` and return the items it completed."""
        if self._state is ParserState.CLOSED:
            raise LocalProtocolError("feed() after feed_eof()")
        buf = self._buf
        if max(self._scanned, self._marker_scan, self._crlf_upto) > len(buf):
            # Buffered bytes were dropped (to be fed again): search them afresh.
            self._forget_scans()
        buf += data
        out: list[Item] = []
        while self._READERS[self._state](self, out):
            pass
        return out

    def feed_eof(self) -> list[Item]:
        """Signal end of stream; a partial message left in the buffer becomes Malformed."""
        out: list[Item] = []
        if self._state is not ParserState.CLOSED:
            leftover = bytes(self._buf)
            skipping = self._state in (ParserState.DISCARD, ParserState.DISCARD_COMMAND_OUTPUT)
            if leftover.strip() and not skipping:
                raw = leftover.replace(b"\r\n", b"\n").rstrip(b"\n")
                out.append(self._malformed("stream ended inside a message", raw))
            self._buf.clear()
            self._forget_scans()
            self._state = ParserState.CLOSED
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buf)

    def unfeed(self, count: int) -> None:
        """Forget the last ``count`` buffered bytes; the caller feeds them again later.

        A reader that peeks at its socket feeds what it peeked, then takes off the socket
        only the bytes the parser consumed: the incomplete tail stays in the kernel and
        is peeked again with what follows (see the class docstring for why the items
        are unchanged).

        Raises:
            ValueError: ``count`` is negative or more than :attr:`buffered`.
        """
        if not 0 <= count <= len(self._buf):
            raise ValueError(f"cannot unfeed {count} of {len(self._buf)} buffered bytes")
        if count:
            del self._buf[len(self._buf) - count :]

    # -- readers, one per state; each returns True while it made progress ----------------

    def _read_banner(self, out: list[Item]) -> bool:
        buf = self._buf
        end = buf.find(b"\n", 0, _BANNER_MAX + 2)
        if end < 0 and len(buf) < _BANNER_MAX + 2:
            return False  # the first line is not complete yet and may be the banner
        line = bytes(buf[:end]) if end >= 0 else b""
        if line.endswith(b"\r"):
            line = line[:-1]
        if end < 0 or len(line) > _BANNER_MAX or b":" in line or not line.strip():
            # No banner (a proxy, or a server that starts talking at once): parse as AMI.
            # The state stays BANNER until something is consumed, as it depends on nothing
            # else.
            return self._read_headers(out)
        self._consume(end + 1)
        self.banner = Banner(decode(line)[0])
        out.append(self.banner)
        return True

    def _read_headers(self, out: list[Item]) -> bool:
        buf = self._buf
        if buf.startswith((b"\r", b"\n")) and (blank := _BLANK_LINES.match(buf)):
            self._consume(blank.end())
        if buf.startswith((b"R", b"r")) and _FOLLOWS_LINE.match(buf):
            return self._read_command_output(out)
        start = max(0, self._scanned - 2)
        lf, crlf = buf.rfind(b"\n\n", start), buf.rfind(b"\n\r\n", start)
        if lf < 0 and crlf < 0:
            self._scanned = len(buf)
            return self._check_incomplete_message(out)
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        run = bytes(buf[:end])
        if (b"ollows" in run or b"OLLOWS" in run) and (m := _FOLLOWS_IN_RUN.search(run)):
            # Raw command output may hold blank lines: stop the run before the reply, which
            # is then at the buffer's start and read by its own reader.
            end = m.start(1)
            run = run[:end]
        self._consume(end)
        self._emit_run(run, out)
        return True

    def _check_incomplete_message(self, out: list[Item]) -> bool:
        """Stop buffering a message still arriving that the held bytes prove too big."""
        buf = self._buf
        limit = self.max_message_size
        # Up to two bytes (LF, CR: a line end and half a blank line) may still turn out
        # to be the terminator, so the size is at least the normalised length minus 2.
        # The raw length bounds the normalised one: the count is only needed past it.
        if len(buf) - 2 <= limit:
            return False
        if len(buf) < _FOLLOWS_LINE_MAX and b"\n" not in buf:
            return False  # the first line may still become a Response: Follows line
        if self._normalised_length(len(buf)) - 2 <= limit:
            return False
        # No blank line can start before the last two bytes: keep those for the skip.
        self._overflow(out, len(buf) - 2, ParserState.DISCARD)
        return True

    def _read_command_output(self, out: list[Item]) -> bool:
        found = self._find_end_command()
        if found is None:
            scan, limit = self._marker_scan, self.max_message_size
            # Everything before the earliest place the marker can start is in the reply.
            if scan > limit and self._normalised_length(scan) > limit:
                self._overflow(out, scan, ParserState.DISCARD_COMMAND_OUTPUT)
                return True
            return False
        start, end = found
        block = bytes(self._buf[:start]).replace(b"\r\n", b"\n")
        self._consume(end)
        if len(block) > self.max_message_size:
            out.append(self._oversize(block))
        else:
            out.append(_command_output(block))
        return True

    def _read_discard(self, out: list[Item]) -> bool:
        buf = self._buf
        ends = [i for i in (buf.find(b"\n\n"), buf.find(b"\n\r\n")) if i >= 0]
        if not ends:
            # Keep two bytes: a blank line may straddle this read and the next.
            self._consume(max(0, len(buf) - 2))
            return False
        first = min(ends)
        self._consume(first + (2 if buf[first + 1 : first + 2] == b"\n" else 3))
        self._state = ParserState.HEADERS
        return True

    def _read_discard_command_output(self, out: list[Item]) -> bool:
        found = self._find_end_command()
        if found is None:
            self._consume(self._marker_scan)  # keep what may be the start of the marker
            return False
        self._consume(found[1])
        self._state = ParserState.HEADERS
        return True

    def _read_closed(self, out: list[Item]) -> bool:
        return False

    _READERS: dict[ParserState, Callable[[AmiParser, list[Item]], bool]] = {
        ParserState.BANNER: _read_banner,
        ParserState.HEADERS: _read_headers,
        ParserState.DISCARD: _read_discard,
        ParserState.DISCARD_COMMAND_OUTPUT: _read_discard_command_output,
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
        limit, max_headers = self.max_message_size, self.max_headers
        if len(text) <= limit and text.count(b"\n") < max_headers:
            # No message in this run can be over a limit: skip the per-message checks.
            out.extend(
                [Event.from_raw(b) if b[:7] == b"Event: " else _classify(b) for b in blocks if b]
            )
            return
        for raw in blocks:
            if not raw:
                continue
            size = len(raw)
            if size > limit:
                out.append(self._oversize(raw))
            # A message has at most one line per byte: only a long one can have too many.
            elif size >= max_headers and (line_ends := raw.count(b"\n")) >= max_headers:
                reason = f"message has {line_ends + 1} headers, over max_headers={max_headers}"
                out.append(self._malformed(reason, raw))
            else:
                out.append(Event.from_raw(raw) if raw[:7] == b"Event: " else _classify(raw))

    def _find_end_command(self) -> tuple[int, int] | None:
        """Where the ``--END COMMAND--`` line is, as (start, end), or None for not yet."""
        buf = self._buf
        m = _END_COMMAND_RE.search(buf, self._marker_scan)
        if m is None:
            # Only a partial marker at the very end can still become one.
            self._marker_scan = max(self._marker_scan, len(buf) - len(_END_COMMAND) + 1)
            return None
        if m.group(1) is not None:
            self._marker_scan = m.start()  # the marker's line end is still to come
            return None
        return m.start(), m.end()

    def _normalised_length(self, end: int) -> int:
        """``len(_buf[:end])`` with each CRLF counted once; counted incrementally."""
        if end < self._crlf_upto:
            self._crlfs = self._crlf_upto = 0
        # A CRLF straddling the old end was not counted yet: start one byte earlier.
        self._crlfs += self._buf.count(b"\r\n", max(0, self._crlf_upto - 1), end)
        self._crlf_upto = end
        return end - self._crlfs

    def _overflow(self, out: list[Item], upto: int, then: ParserState) -> None:
        """Report the too-big message at the buffer's start, drop ``upto`` bytes, skip."""
        out.append(self._oversize(bytes(self._buf[:upto]).replace(b"\r\n", b"\n")))
        self._consume(upto)
        self._state = then

    def _consume(self, count: int) -> None:
        """Drop ``count`` bytes from the front of the buffer: they are dealt with."""
        if count:
            del self._buf[:count]
            if self._state is ParserState.BANNER:
                self._state = ParserState.HEADERS  # a banner only ever comes first
        self._forget_scans()

    def _forget_scans(self) -> None:
        self._scanned = self._marker_scan = self._crlfs = self._crlf_upto = 0

    def _oversize(self, raw: bytes) -> Malformed:
        return self._malformed(
            f"message exceeds max_message_size ({self.max_message_size} bytes)", raw
        )

    def _malformed(self, reason: str, raw: bytes) -> Malformed:
        """A Malformed item from a message's bytes (LF line ends), cut to the size limit."""
        kept = raw[: self.max_message_size]
        block, _ = decode(kept.strip(b"\n"))
        return Malformed(
            reason, kept, split_headers_loosely(block)[: self.max_headers] if block else ()
        )
