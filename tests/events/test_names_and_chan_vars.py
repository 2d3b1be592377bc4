"""Two wire oddities: blanks around an event's name, and a ChanVariable without ``=``."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from bridge.cli import replay
from bridge.cli.exit_codes import ExitCode
from bridge.events import REGISTRY, Validated, encode, validate
from tests.events.wire import parse_event

HANGUP = (
    "Channel: PJSIP/alice-00000001\nUniqueid: 1795675153.0\nCause: 16\nCause-txt: Normal Clearing"
)


def validated(text: str) -> Validated:
    result = validate(parse_event(text))
    assert isinstance(result, Validated)
    return result


@pytest.mark.parametrize("first_line", ["Event: Hangup ", "Event:  Hangup\t", "Event:Hangup"])
def test_an_event_name_with_blanks_gets_its_model(first_line: str) -> None:
    result = validated(f"{first_line}\nPrivilege: call,all\n{HANGUP}")

    assert result.name == "Hangup"
    assert type(result.model) is REGISTRY["hangup"]
    assert result.fields["Cause"] == 16


def test_replay_routes_an_event_name_with_a_trailing_blank_by_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "hangup.ami"
    wire = f"Event: Hangup \nPrivilege: call,all\n{HANGUP}\n\n".replace("\n", "\r\n")
    capture.write_bytes(b"Asterisk Call Manager/9.0.0\r\n" + wire.encode())
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)

    assert replay.run(parser.parse_args([str(capture), "--stdout"])) == ExitCode.OK

    (line,) = capsys.readouterr().out.splitlines()
    printed = orjson.loads(line)
    assert printed["routing_key"] == "replay.call.hangup"


def test_a_chan_variable_without_equals_is_kept_apart_from_an_empty_one() -> None:
    result = validated(
        f"Event: Hangup\nPrivilege: call,all\n{HANGUP}"
        "\nChanVariable: EMPTY=\nChanVariable: NOEQUALS\nDestChanVariable: ALSO"
    )

    assert result.chan_vars == {"ChanVariable": {"EMPTY": ""}}
    assert result.extra == {"ChanVariable": "NOEQUALS", "DestChanVariable": "ALSO"}
    assert result.drift == ("ChanVariable", "DestChanVariable")
    message = orjson.loads(encode(result, server="pbx1", epoch=1, seq=1, received_at=1795675153.5))
    assert message["chan_vars"] == {"ChanVariable": {"EMPTY": ""}}
    assert message["extra"] == {"ChanVariable": "NOEQUALS", "DestChanVariable": "ALSO"}


def test_a_generic_event_keeps_a_chan_variable_without_equals_in_its_fields() -> None:
    result = validated("Event: NoSuchEventAnywhere\nChanVariable: A=1\nChanVariable: B")

    assert result.is_generic
    assert result.chan_vars == {"ChanVariable": {"A": "1"}}
    assert result.fields["ChanVariable"] == "B"
