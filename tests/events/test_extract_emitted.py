"""``scripts/extract_emitted.py`` reads the event writes of C source as Asterisk has them."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import import_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "extract_emitted.py"

SOURCE = r"""
/* manager_event(EVENT_FLAG_CALL, "Commented", "X: %d\r\n"); is not code */
static void peer_expired(struct iax2_peer *peer)
{
	manager_event(EVENT_FLAG_SYSTEM, "PeerStatus",
		"ChannelType: IAX2\r\nPeer: IAX2/%s\r\nPeerStatus: Unregistered\r\nCause: Expired\r\n",
		peer->name);
	manager_event(EVENT_FLAG_SYSTEM, "PeerStatus", "Peer: %s\r\nPort: %d\r\n"
		"Time: %" PRId64 "\r\n", peer->name, port, ms);
}

static int action_users(struct mansession *s, const struct message *m)
{
	astman_send_listack(s, m, "Users will follow", "start");
	astman_append(s,
		"Event: UserEntry\r\n"
		"%s"
		"Name: %s\r\n"
		"Count: %d\r\n"
#ifdef IMAP_STORAGE
		"IMAPPort: %s\r\n"
#endif
		"\r\n", id, name, count, port);
	astman_send_list_complete_start(s, m, "UserEntryComplete", count);
	astman_send_list_complete_end(s);
	return 0;
}

static void publish(void)
{
	blob = ast_json_pack("{s: s, s: i}", "Service", service, "CoreID", core_id);
	ast_manager_publish_event("CCAvailable", EVENT_FLAG_CC, blob);
}
"""


@pytest.fixture(scope="module")
def extractor() -> ModuleType:
    return import_script(SCRIPT, "extract_emitted")


def _extract(extractor: ModuleType) -> dict[str, dict[str, str]]:
    found: dict[str, object] = {}
    extractor.extract_file(SOURCE, "11.25.3", "x.c", found)
    events = extractor.render(found, ("11.25.3",))
    return {name: {k: v["type"] for k, v in e["fields"].items()} for name, e in events.items()}


def test_a_field_written_as_text_in_one_call_is_text(extractor: ModuleType) -> None:
    events = _extract(extractor)

    assert "Commented" not in events
    assert events["PeerStatus"] == {
        "ChannelType": "text",
        "Peer": "text",
        "PeerStatus": "text",
        "Cause": "text",
        "Port": "int",
        "Time": "int",  # "%" PRId64
    }


def test_list_items_and_completions_are_found(extractor: ModuleType) -> None:
    events = _extract(extractor)

    # The "%s" before a header (the ActionID line) and #ifdef branches are read through.
    assert events["UserEntry"] == {"Name": "text", "Count": "int", "IMAPPort": "text"}
    assert events["UserEntryComplete"] == {"EventList": "text", "ListItems": "int"}


def test_published_blobs_take_their_types_from_the_json_pack(extractor: ModuleType) -> None:
    events = _extract(extractor)

    assert events["CCAvailable"] == {"Service": "text", "CoreID": "int"}


def test_the_privilege_class_comes_from_the_flag(extractor: ModuleType) -> None:
    found: dict[str, object] = {}
    extractor.extract_file(SOURCE, "11.25.3", "x.c", found)
    events = extractor.render(found, ("11.25.3",))

    assert events["PeerStatus"]["classes"] == ["system"]
    assert events["UserEntry"]["classes"] == []
    assert events["CCAvailable"]["classes"] == ["cc"]
