"""``scripts/fixture_counts.py`` finds AMI messages in dumps, YAML and test code alike."""

from __future__ import annotations

from pathlib import Path

from tests.support.scripts import import_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fixture_counts.py"


def test_messages_are_found_in_dumps_yaml_and_string_literals(tmp_path: Path) -> None:
    counts = import_script(SCRIPT, "fixture_counts")
    (tmp_path / "ami.dump").write_text(
        "Event: Hangup\nPrivilege: call,all\nChannel: SIP/1-01\nCause: 16\n\n"
        "Response: Success\nPing: Pong\n\n"
    )
    (tmp_path / "test-config.yaml").write_text(
        "    conditions:\n      match:\n        Event: 'PeerStatus'\n"
        "        Peer: 'PJSIP/alice'\n        PeerStatus: 'Reachable'\n"
    )
    (tmp_path / "test_client.py").write_text(
        "EVENT = (\n    b'Event: FutureThing\\r\\n'\n    b'Answer: 42\\r\\n'\n)\n"
        'BROKEN = "Event: Hangup\\r\\nChannel: SIP/2-02\\r\\n\\r\\n"\n'
    )

    (tally,) = counts.tally([str(tmp_path)]).values()

    assert (tally.typed, tally.generic, tally.invalid) == (2, 1, 1)
    assert tally.generic_names == {"FutureThing": 1}
    assert tally.invalid_reasons == {"Hangup.Cause": 1}  # a Hangup cannot lack its Cause
