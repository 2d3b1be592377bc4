"""The sans-I/O AMI parser and encoder: framing, lossless headers, limits, chunking."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.errors import LocalProtocolError
from bridge.ami.protocol import (
    AmiParser,
    Banner,
    CommandOutput,
    Event,
    Item,
    Malformed,
    Message,
    ParserState,
    Response,
    serialize,
    serialize_action,
)

CAPTURES = sorted((Path(__file__).parent.parent / "fixtures" / "captures").glob("*.ami"))


def parse_whole(data: bytes, **limits: int) -> list[Item]:
    parser = AmiParser(**limits)  # type: ignore[arg-type]
    return parser.feed(data) + parser.feed_eof()


def parse_chunks(data: bytes, cuts: list[int], **limits: int) -> list[Item]:
    parser = AmiParser(**limits)  # type: ignore[arg-type]
    items: list[Item] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        items += parser.feed(data[start:cut])
        start = cut
    return items + parser.feed_eof()


def parse_every_way(data: bytes, **limits: int) -> list[Item]:
    """Parse whole, byte by byte and at random cuts; all three must agree."""
    whole = parse_whole(data, **limits)
    assert parse_chunks(data, list(range(1, len(data))), **limits) == whole
    rng = random.Random(len(data))
    cuts = rng.sample(range(1, len(data)), min(len(data) - 1, 7)) if len(data) > 1 else []
    assert parse_chunks(data, cuts, **limits) == whole
    return whole


def messages(items: list[Item]) -> list[Message]:
    return [item for item in items if isinstance(item, Message)]


class TestCaptures:
    @pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
    def test_message_count_matches_blank_line_blocks(self, path: Path) -> None:
        data = path.read_bytes()
        # Independent count: drop the banner line, split on CRLF blank lines.
        body = data.split(b"\r\n", 1)[1]
        expected = [block for block in body.split(b"\r\n\r\n") if block.strip()]
        items = parse_chunks(data, list(range(4096, len(data), 4096)))
        assert isinstance(items[0], Banner)
        assert items[0].version == "11.0.0"
        assert len(messages(items)) == len(expected)
        assert not [item for item in items if isinstance(item, Malformed)]
        # Every header line of the file is in a message, in order: nothing dropped.
        for message, block in zip(messages(items), expected, strict=True):
            assert len(message.headers) == block.count(b"\r\n") + 1

    @pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
    def test_any_split_gives_the_same_messages(self, path: Path) -> None:
        data = path.read_bytes()
        whole = parse_whole(data)
        rng = random.Random(7)
        cuts = rng.sample(range(1, len(data)), min(200, len(data) - 1))
        assert parse_chunks(data, cuts) == whole

    def test_repeated_keys_are_all_kept(self) -> None:
        data = (CAPTURES[0].parent / "calls-basic.ami").read_bytes()
        user_events = [
            m for m in messages(parse_whole(data)) if isinstance(m, Event) and m.name == "UserEvent"
        ]
        assert user_events
        for event in user_events:
            uniqueids = event.get_all("Uniqueid")
            assert len(uniqueids) == 2, event
        repeated = re.findall(rb"(?i)\r\nuniqueid:", data)
        total = sum(len(m.get_all("uniqueid")) for m in messages(parse_whole(data)))
        assert total == len(repeated)

    def test_modern_command_output_lines(self) -> None:
        data = (CAPTURES[0].parent / "actions.ami").read_bytes()
        replies = [
            m for m in messages(parse_whole(data)) if m.get("Message") == "Command output follows"
        ]
        assert replies
        assert all(isinstance(r, Response) for r in replies)
        assert any(len(r.get_all("Output")) > 1 for r in replies)


class TestFraming:
    def test_banner_then_messages(self) -> None:
        items = parse_every_way(b"Asterisk Call Manager/2.10.3\r\nResponse: Success\r\n\r\n")
        assert items[0] == Banner("Asterisk Call Manager/2.10.3")
        assert items[0].version == "2.10.3"
        assert isinstance(items[1], Response)
        assert items[1].is_success

    def test_no_banner_is_parsed_as_messages(self) -> None:
        items = parse_every_way(b"Event: Ping\r\n\r\n")
        assert [type(item) for item in items] == [Event]

    def test_crlf_bare_lf_and_mixed_line_ends_agree(self) -> None:
        crlf = b"Event: A\r\nKey: v\r\n\r\nEvent: B\r\n\r\n"
        lf = crlf.replace(b"\r\n", b"\n")
        mixed = b"Event: A\r\nKey: v\n\r\nEvent: B\n\n"
        assert parse_every_way(crlf) == parse_every_way(lf) == parse_every_way(mixed)
        assert messages(parse_whole(lf))[0].headers == (("Event", "A"), ("Key", "v"))

    def test_extra_blank_lines_between_messages_are_ignored(self) -> None:
        items = parse_every_way(b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n")
        assert [m.headers for m in messages(items)] == [(("Event", "A"),), (("Event", "B"),)]

    def test_event_and_response_are_told_apart_by_the_first_key(self) -> None:
        data = (
            b"Event: OriginateResponse\r\nPrivilege: call,all\r\nResponse: Success\r\n\r\n"
            b"Response: Success\r\nActionID: 1\r\nEvent: not-first\r\n\r\n"
            b"ActionID: 2\r\nStrange: first key\r\n\r\n"
        )
        items = parse_every_way(data)
        assert [type(item) for item in items] == [Event, Response, Message]
        assert isinstance(items[0], Event)
        assert items[0].name == "OriginateResponse"
        assert items[1].action_id == "1"

    def test_lines_without_a_colon_are_kept(self) -> None:
        items = parse_every_way(b"Event: X\r\nno colon here\r\nKey: v\r\n\r\n")
        assert messages(items)[0].headers == (("Event", "X"), ("", "no colon here"), ("Key", "v"))

    def test_values_keep_colons_spaces_and_only_lose_one_leading_space(self) -> None:
        data = b"Response: Success\r\nOutput:   indented: x\r\nEmpty: \r\nBare:\r\nTight:v\r\n\r\n"
        headers = messages(parse_every_way(data))[0].headers
        assert headers == (
            ("Response", "Success"),
            ("Output", "  indented: x"),
            ("Empty", ""),
            ("Bare", ""),
            ("Tight", "v"),
        )

    def test_lookup_ignores_case_and_keeps_order(self) -> None:
        message = messages(parse_whole(b"Event: V\r\nVariable: a=1\r\nvariable: b=2\r\n\r\n"))[0]
        assert message.get("VARIABLE") == "a=1"
        assert message.get_all("variable") == ["a=1", "b=2"]
        assert message.get("missing", "default") == "default"

    def test_legacy_response_follows_keeps_raw_output_with_blank_lines(self) -> None:
        data = (
            b"Asterisk Call Manager/1.1\r\n"
            b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n"
            b"Name/username   Host\nKey: looks like a header\n\nafter a blank line\n"
            b"--END COMMAND--\r\n\r\n"
            b"Event: After\r\n\r\n"
        )
        items = parse_every_way(data)
        assert [type(item) for item in items] == [Banner, CommandOutput, Event]
        output = items[1]
        assert isinstance(output, CommandOutput)
        assert output.status == "Follows"
        assert output.action_id == "7"
        assert (
            output.output
            == "Name/username   Host\nKey: looks like a header\n\nafter a blank line\n"
        )

    def test_multibyte_character_split_across_reads(self) -> None:
        data = "Event: X\r\nCallerIDName: Müller 日本\r\n\r\n".encode()
        split_inside = data.index("日".encode()) + 1
        items = parse_chunks(data, [split_inside])
        assert messages(items)[0].get("CallerIDName") == "Müller 日本"
        assert not messages(items)[0].invalid_utf8

    def test_invalid_utf8_is_flagged_and_round_trips(self) -> None:
        data = b"Event: X\r\nCallerIDName: caf\xe9\r\n\r\nEvent: Y\r\n\r\n"
        first, second = messages(parse_every_way(data))
        assert first.invalid_utf8
        assert not second.invalid_utf8
        value = first.get("CallerIDName")
        assert value is not None
        assert value.encode("utf-8", "surrogateescape") == b"caf\xe9"

    def test_eof_inside_a_message_yields_malformed(self) -> None:
        parser = AmiParser(expect_banner=False)
        assert parser.feed(b"Event: Cut\r\nKey: va") == []
        items = parser.feed_eof()
        assert len(items) == 1
        assert isinstance(items[0], Malformed)
        assert items[0].headers == (("Event", "Cut"), ("Key", "va"))
        assert parser.state is ParserState.CLOSED
        with pytest.raises(LocalProtocolError):
            parser.feed(b"more")


class TestLimits:
    def test_defaults_are_generous(self) -> None:
        parser = AmiParser()
        assert parser.max_message_size >= 1024 * 1024
        assert parser.max_headers >= 2000

    def test_two_thousand_chanvariables_pass_with_defaults(self) -> None:
        lines = b"".join(b"ChanVariable: v%d=x\r\n" % i for i in range(2500))
        items = parse_every_way(b"Event: Newchannel\r\n" + lines + b"\r\n")
        assert len(messages(items)[0].get_all("ChanVariable")) == 2500

    def test_oversize_message_yields_malformed_then_resynchronises(self) -> None:
        big = b"Event: Big\r\n" + b"".join(b"K%d: %s\r\n" % (i, b"x" * 50) for i in range(40))
        data = b"Event: Before\r\n\r\n" + big + b"\r\nEvent: After\r\n\r\n"
        items = parse_every_way(data, max_message_size=512)
        kinds = [type(item) for item in items]
        assert kinds == [Event, Malformed, Event]
        malformed = items[1]
        assert isinstance(malformed, Malformed)
        assert malformed.headers[0] == ("Event", "Big")
        assert 0 < len(malformed.data) <= 512
        assert "max_message_size" in malformed.reason
        assert isinstance(items[2], Event)
        assert items[2].name == "After"

    def test_too_many_headers_yields_malformed_with_what_was_read(self) -> None:
        lines = b"".join(b"V: %d\r\n" % i for i in range(30))
        data = b"Event: Many\r\n" + lines + b"\r\nEvent: Next\r\n\r\n"
        items = parse_every_way(data, max_headers=10)
        assert [type(item) for item in items] == [Malformed, Event]
        malformed = items[0]
        assert isinstance(malformed, Malformed)
        assert "max_headers=10" in malformed.reason
        assert len(malformed.headers) == 10
        assert malformed.headers[0] == ("Event", "Many")

    def test_buffer_never_grows_past_the_limit(self) -> None:
        parser = AmiParser(expect_banner=False, max_message_size=1000)
        for _ in range(100):
            parser.feed(b"x" * 700)
            assert parser.buffered <= 1700
        assert parser.state is ParserState.DISCARD
        assert messages(parser.feed(b"\r\n\r\nEvent: Back\r\n\r\n"))[0].get("Event") == "Back"


def _chars(excluded: str) -> st.SearchStrategy[str]:
    return st.characters(blacklist_categories=("Cs",), blacklist_characters=excluded)


@settings(max_examples=200, deadline=None)
@given(
    blocks=st.lists(
        st.lists(
            st.tuples(
                st.text(_chars(":\r\n"), min_size=1, max_size=12),
                st.text(_chars("\r\n"), max_size=30),
            ),
            min_size=1,
            max_size=8,
        ),
        max_size=8,
    ),
    line_end=st.sampled_from([b"\r\n", b"\n"]),
    data=st.data(),
)
def test_any_chunking_yields_the_same_messages(
    blocks: list[list[tuple[str, str]]], line_end: bytes, data: st.DataObject
) -> None:
    stream = b"Asterisk Call Manager/9.0.0" + line_end
    for headers in blocks:
        encoded = serialize([(k.strip() or "K", v) for k, v in headers])
        stream += encoded.replace(b"\r\n", line_end)
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=max(1, len(stream) - 1))))
    whole = parse_whole(stream)
    assert parse_chunks(stream, cuts) == whole
    assert len(messages(whole)) == len(blocks)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=399), max_size=5))
def test_arbitrary_bytes_never_raise_and_never_lose_chunk_invariance(
    data: bytes, cuts: list[int]
) -> None:
    cuts = [c for c in cuts if c < len(data)]
    whole = parse_whole(data, max_message_size=64, max_headers=4)
    assert parse_chunks(data, cuts, max_message_size=64, max_headers=4) == whole
    for item in whole:
        if isinstance(item, Message):
            assert item.headers  # splitting never raises either


class TestEncoding:
    def test_action_with_action_id_and_repeated_headers(self) -> None:
        encoded = serialize_action(
            "Originate", {"Channel": "PJSIP/100", "Variable": ["a=1", "b=2"]}, action_id="x-1"
        )
        assert encoded == (
            b"Action: Originate\r\nActionID: x-1\r\nChannel: PJSIP/100\r\n"
            b"Variable: a=1\r\nVariable: b=2\r\n\r\n"
        )
        parsed = messages(AmiParser(expect_banner=False).feed(encoded))[0]
        assert parsed.get_all("Variable") == ["a=1", "b=2"]

    @pytest.mark.parametrize(
        "headers",
        [
            [("Channel", "x\r\nAction: Hangup")],
            [("Channel", "x\nEvil: 1")],
            [("Bad\r\nKey", "v")],
            [("Key: injected", "v")],
            [("", "v")],
        ],
    )
    def test_refuses_header_injection(self, headers: list[tuple[str, str]]) -> None:
        with pytest.raises(LocalProtocolError):
            serialize_action("Ping", headers)

    def test_message_from_headers_round_trips_through_raw(self) -> None:
        original = Event((("Event", "X"), ("", "loose line"), ("K", " spaced")))
        reparsed = messages(AmiParser(expect_banner=False).feed(original.raw + b"\n\n"))[0]
        assert reparsed == original
