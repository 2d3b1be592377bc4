"""Every event that a real Asterisk 22 sent validates, typed, with nothing reported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bridge.events import REGISTRY, Envelope, GenericEvent, Validated, encode, validate
from tests.events.wire import CAPTURES, parse_events

EXPECTED_COUNTS = {
    "actions-failed-login.ami": 0,
    "actions-md5-login.ami": 2,
    "actions.ami": 298,
    "calls-basic.ami": 2312,
    "reload.ami": 20,
}


def validated_capture(path: Path) -> list[Validated]:
    results = [validate(event) for event in parse_events(path.read_bytes(), banner=True)]
    invalid = [r for r in results if not isinstance(r, Validated)]
    assert invalid == []
    return [r for r in results if isinstance(r, Validated)]


def test_every_capture_is_counted() -> None:
    assert sorted(p.name for p in CAPTURES) == sorted(EXPECTED_COUNTS)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_has_no_invalid_records(path: Path) -> None:
    results = validated_capture(path)

    assert len(results) == EXPECTED_COUNTS[path.name]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_events_get_their_typed_model_or_the_generic_one(path: Path) -> None:
    for result in validated_capture(path):
        model = REGISTRY.get(result.name.lower())
        assert type(result.model) is (model or GenericEvent), result.name
        # Asterisk 22 sends nothing its model does not know (UserEvent payload aside).
        assert result.drift == (), result.name
        assert result.unlisted_values == (), result.name


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_published_fields_equal_the_model_dump(path: Path) -> None:
    for result in validated_capture(path):
        dump = result.model.model_dump(by_alias=True, exclude_unset=True)
        for key in result.extra:
            del dump[key]
        assert dump == result.fields, result.name


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_encoded_captures_parse_back_into_their_envelope(path: Path) -> None:
    for seq, result in enumerate(validated_capture(path)):
        data = encode(result, server="pbx1", epoch=7, seq=seq, received_at=1795675153.5)

        envelope = Envelope[type(result.model)].model_validate_json(data)  # type: ignore[misc]

        assert envelope.fields is not None
        assert envelope.fields.model_dump(by_alias=True, exclude_unset=True) == result.fields
        assert envelope.extra == result.extra
        assert envelope.repeated == result.repeated
        assert envelope.id == f"pbx1:7:{seq}"


def test_typed_values_of_the_calls_capture() -> None:
    path = next(p for p in CAPTURES if p.name == "calls-basic.ami")
    results = validated_capture(path)
    hangups = [r for r in results if r.name == "Hangup"]
    names = Counter(r.name for r in results)

    assert names["Newexten"] == 299
    assert {type(r.fields["Cause"]) for r in hangups} == {int}
    assert {r.fields["Cause"] for r in hangups} >= {16, 21}
    assert all(isinstance(r.fields["ChannelState"], int) for r in results if r.name == "Newstate")
    user_events = [r for r in results if r.name == "UserEvent"]
    # The dialplan UserEvent() repeats Uniqueid: the first value is the field.
    assert all(r.repeated["Uniqueid"][0] == r.fields["Uniqueid"] for r in user_events)
    assert all(r.extra.keys() >= {"Stage", "Kind"} for r in user_events)
