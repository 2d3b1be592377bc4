"""The framing rules of :mod:`bridge.ami.protocol`, written the slow and obvious way.

:func:`reference_items` reads a *complete* stream one line at a time, as the module
docstring describes AMI framing, and says what items it holds.  The parser works on runs
of bytes with searches that resume, so the two share no code: where they agree on a
stream, the parser's fast paths implement the documented rules.  :func:`describe` turns
parser items into the same plain tuples.  :func:`streams` draws adversarial but
complete streams for Hypothesis: CR and LF mixed, extra blank lines, ``Response: Follows``
replies with blank lines, ``Key: value`` lines and near-miss markers in their text.
:func:`parse_with_refeeds` feeds a stream the way a reader that peeks at its socket does.
"""

from __future__ import annotations

import random
import re

from hypothesis import strategies as st

from bridge.ami.protocol import AmiParser, Banner, CommandOutput, Item, Malformed, Message

Described = tuple[object, ...]

_FOLLOWS_LINE = re.compile(
    rb"(?i:response):[ \t]{0,16}(?:Follows|follows|FOLLOWS)[ \t]{0,16}\r?\n\Z"
)
_MARKER = re.compile(rb"--END COMMAND--[ \t]{0,16}\r?\n")
_COMMAND_HEADERS = {"response", "privilege", "actionid"}
_OVERSIZE = "message exceeds max_message_size"


def describe(items: list[Item]) -> list[Described]:
    """Parser items as plain tuples: what a reader of the stream can observe."""
    out: list[Described] = []
    for item in items:
        if isinstance(item, Banner):
            out.append(("banner", item.line))
        elif isinstance(item, Malformed):
            kind = "oversize" if item.reason.startswith(_OVERSIZE) else item.reason
            out.append(("malformed", kind, item.data))
        elif isinstance(item, CommandOutput):
            out.append(("command", item.headers, item.output))
        else:
            assert isinstance(item, Message)
            out.append((type(item).__name__, item.raw))
    return out


def _lines(stream: bytes) -> list[bytes]:
    """The stream's lines, each with its line end (the last one may have none)."""
    return re.findall(rb"[^\n]*\n|[^\n]+\Z", stream)


def _content(line: bytes) -> bytes:
    """A line without its line end: LF, or CRLF (one CR)."""
    line = line.removesuffix(b"\n")
    return line.removesuffix(b"\r")


def _kind(raw: bytes) -> str:
    key, colon, _ = raw.partition(b":")
    if colon and key.lower() == b"event":
        return "Event"
    if colon and key.lower() == b"response":
        return "Response"
    return "Message"


def reference_items(
    stream: bytes, *, max_message_size: int, max_headers: int, banner: bool
) -> list[Described]:
    """What a complete ``stream`` holds, by the documented rules, as :func:`describe` does.

    A complete stream ends after a message's terminator (a blank line, or the end of the
    ``--END COMMAND--`` line); trailing blank lines are allowed.
    """
    out: list[Described] = []
    lines = _lines(stream)
    i = 0
    if banner and lines:
        first = _content(lines[0])
        if len(first) <= 100 and b":" not in first and first.strip():
            out.append(("banner", first.decode("utf-8", "surrogateescape")))
            i = 1
    while i < len(lines):
        assert lines[i].endswith(b"\n"), "the stream is not complete"
        if not _content(lines[i]):
            i += 1  # a blank line between messages
            continue
        if _FOLLOWS_LINE.match(lines[i]):
            # The reply runs to the marker, wherever it is in the bytes that follow.
            rest = b"".join(lines[i:])
            marker = _MARKER.search(rest)
            assert marker is not None, "the stream is not complete"
            block = rest[: marker.start()].replace(b"\r\n", b"\n")
            if len(block) > max_message_size:
                out.append(("malformed", "oversize", block[:max_message_size]))
            else:
                out.append(_command(block))
            lines = _lines(rest[marker.end() :])
            i = 0
            continue
        message: list[bytes] = []
        while i < len(lines) and _content(lines[i]):
            assert lines[i].endswith(b"\n"), "the stream is not complete"
            message.append(_content(lines[i]))
            i += 1
        assert i < len(lines), "the stream is not complete"
        raw = b"\n".join(message)
        if len(raw) > max_message_size:
            out.append(("malformed", "oversize", raw[:max_message_size]))
        elif len(message) > max_headers:
            reason = f"message has {len(message)} headers, over max_headers={max_headers}"
            out.append(("malformed", reason, raw))
        else:
            out.append((_kind(raw), raw))
    return out


def _command(block: bytes) -> Described:
    text = block.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    count = 0
    while count < len(lines) and (
        lines[count].partition(":")[0].strip().lower() in _COMMAND_HEADERS
    ):
        count += 1
    headers = []
    for line in lines[:count]:
        key, colon, value = line.partition(":")
        headers.append((key, value.removeprefix(" ")) if colon else ("", line))
    if headers:
        headers[0] = (headers[0][0], headers[0][1].strip("".join(map(chr, range(33)))))
    return ("command", tuple(headers), "\n".join(lines[count:]))


def drop_buffered_tail(parser: AmiParser, count: int) -> None:
    """Forget the last ``count`` buffered bytes, to feed them again later.

    That is what ``AmiParser.unfeed`` does for a reader that peeks at its socket; where
    the method exists it is the one called.
    """
    unfeed = getattr(parser, "unfeed", None)
    if unfeed is not None:
        unfeed(count)
    else:
        del parser._buf[len(parser._buf) - count :]


def parse_with_refeeds(data: bytes, seed: int, **options: int) -> list[Item]:
    """Feed random chunks; after each, drop some buffered bytes and feed them again."""
    rng = random.Random(seed)
    parser = AmiParser(**options)  # type: ignore[arg-type]
    items: list[Item] = []
    pos = 0
    while pos < len(data):
        end = min(len(data), pos + rng.choice([1, 2, 3, 7, 64, 500, 4096]))
        items += parser.feed(data[pos:end])
        # Mostly some of what was just fed, now and then all that is buffered.
        most = parser.buffered if rng.random() < 0.1 else min(parser.buffered, end - pos)
        dropped = rng.randint(0, most)
        drop_buffered_tail(parser, dropped)
        pos = end - dropped
    return items + parser.feed_eof()


# -- streams for Hypothesis ---------------------------------------------------------------

_line_end = st.sampled_from([b"\r\n", b"\n"])
_text = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
_key = st.sampled_from(
    [b"Event", b"Response", b"ActionID", b"Channel", b"event", b"RESPONSE", b"X-Odd", b""]
)
_value = st.one_of(
    _text,
    st.sampled_from([b"Follows", b" Follows  ", b"Hangup ", b"a: b", b"\r", b"--END COMMAND--"]),
)


@st.composite
def _header_message(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_key, _value, _line_end), min_size=1, max_size=8))
    body = b"".join((k + b": " + v if k else v or b"x") + end for k, v, end in lines)
    if _FOLLOWS_LINE.match(_lines(body)[0]):
        body = b"Event: X\r\n" + body  # a message, not the start of a reply
    return body + draw(_line_end)


@st.composite
def _follows_reply(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([b"Follows", b"follows", b"FOLLOWS", b"Follows  "]))
    head = draw(st.sampled_from([b"Response: ", b"response:", b"RESPONSE:\t"])) + status
    head += draw(_line_end) + b"Privilege: Command" + draw(_line_end)
    if draw(st.booleans()):
        head += b"ActionID: " + draw(_text) + draw(_line_end)
    output = draw(
        st.lists(
            st.one_of(
                _text,
                st.sampled_from(
                    [b"", b"Key: value", b"--END COMMAND", b"-- END COMMAND--", b"Event: Fake"]
                ),
            ),
            max_size=6,
        )
    )
    text = b"\n".join(output)
    ends_in_newline = draw(st.booleans())
    if output and ends_in_newline:
        text += b"\n"  # CLI text usually ends in a newline, but not always
    marker = b"--END COMMAND--" + draw(st.sampled_from([b"", b" ", b"\t  "])) + draw(_line_end)
    return head + text + marker + draw(st.sampled_from([b"\r\n", b"\n", b""]))


@st.composite
def streams(draw: st.DrawFn, banner: bool) -> bytes:
    """A complete AMI stream: the banner if asked, messages, replies, extra blank lines."""
    stream = b""
    if banner:
        stream += b"Asterisk Call Manager/1.0" + draw(_line_end)
    pieces = st.one_of(_header_message(), _follows_reply(), _line_end)
    for piece in draw(st.lists(pieces, max_size=8)):
        stream += piece
    return stream
