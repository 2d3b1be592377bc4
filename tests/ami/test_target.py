"""AMI URLs: ami:// and amis:// with default ports; a password in the URL is refused."""

from __future__ import annotations

import pytest

from bridge.ami.target import AmiTarget, parse_ami_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ami://bridge@pbx.example:5038", AmiTarget("bridge", "pbx.example", 5038, tls=False)),
        ("ami://bridge@pbx.example", AmiTarget("bridge", "pbx.example", 5038, tls=False)),
        ("amis://bridge@pbx.example", AmiTarget("bridge", "pbx.example", 5039, tls=True)),
        ("amis://bridge@10.0.0.7:6000", AmiTarget("bridge", "10.0.0.7", 6000, tls=True)),
        ("AMI://bridge@pbx.example/", AmiTarget("bridge", "pbx.example", 5038, tls=False)),
        ("ami://br%40dge@[::1]:5038", AmiTarget("br@dge", "::1", 5038, tls=False)),
    ],
)
def test_parse_ami_url(url: str, expected: AmiTarget) -> None:
    assert parse_ami_url(url) == expected


def test_str_is_the_url_without_any_secret() -> None:
    assert str(AmiTarget("bridge", "pbx.example", 5038)) == "ami://bridge@pbx.example:5038"
    assert str(AmiTarget("bridge", "pbx.example", 5039, tls=True)) == (
        "amis://bridge@pbx.example:5039"
    )
    assert str(AmiTarget("bridge", "::1", 5038)) == "ami://bridge@[::1]:5038"


@pytest.mark.parametrize(
    "url",
    ["ami://bridge:hunter2-pw@pbx:5038", "amis://bridge:hunter2-pw@pbx", "http://u:hunter2-pw@h"],
)
def test_a_password_in_the_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="secret setting") as caught:
        parse_ami_url(url)
    assert "hunter2-pw" not in str(caught.value)
    assert "hunter2-pw" not in repr(caught.value)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://bridge@pbx:5038", "scheme"),
        ("ami://pbx:5038", "user"),
        ("ami://bridge@:5038", "host"),
        ("ami://bridge@pbx:notaport", "port"),
        ("ami://bridge@pbx:0", "port"),
        ("ami://bridge@pbx:5038/path", "path"),
        ("ami://bridge@pbx:5038?x=1", "query"),
    ],
)
def test_invalid_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_ami_url(url)


def test_target_is_frozen_and_hashable() -> None:
    target = parse_ami_url("ami://bridge@pbx")
    with pytest.raises(AttributeError):
        target.port = 1  # type: ignore[misc]
    assert {target: 1}[AmiTarget("bridge", "pbx", 5038)] == 1
