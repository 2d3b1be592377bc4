"""The bridge's own status messages (``kind=status``) as pydantic models.

Approach
--------
Besides AMI events the bridge publishes a few messages about itself: it connected to
an AMI server, lost it, missed messages while away (``gap``), dropped journal records
(``overflow``), resynchronised state, gave up on a message the broker kept refusing
(``refused``), or could not write its journal (``journal``).  They use the common keys of
every message (:class:`~bridge.events.envelope.CommonEnvelope`); what differs is
``fields``, described here by one small model per status.  :class:`StatusMessage` is
generic over that model, so ``StatusMessage[GapFields]`` is the whole gap message, the
same way ``Envelope[Hangup]`` is a Hangup event's message.

The field models keep keys they do not know (``extra="allow"``): a later minor version
of the contract may add a key, and consumers must ignore keys they do not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from bridge.events.envelope import CommonEnvelope

__all__ = [
    "STATUS_FIELDS",
    "ActiveFields",
    "ConnectedFields",
    "DisconnectedFields",
    "GapFields",
    "JournalFields",
    "OverflowFields",
    "RefusedFields",
    "ResyncEntry",
    "ResyncFields",
    "StatusFields",
    "StatusMessage",
]


class StatusFields(BaseModel):
    """Base of the ``fields`` of a status message."""

    model_config = ConfigDict(frozen=True, extra="allow")


class ConnectedFields(StatusFields):
    """The bridge logged in to the AMI server."""

    target: str = Field(description="The AMI server as `ami[s]://user@host:port` (no secret).")
    ami_version: str | None = Field(
        description="AMI version from the server's banner, null when it sent none."
    )


class DisconnectedFields(StatusFields):
    """The connection to the AMI server was lost or closed."""

    reason: str = Field(description="Why the connection ended.")


class GapFields(StatusFields):
    """Sent after a reconnect: events of the time away were never read."""

    previous_epoch: int = Field(description="Epoch of the connection that was lost.")
    last_seq: int = Field(description="Last sequence number of the previous epoch.")
    disconnected_for: float = Field(description="Seconds without a connection.")
    reason: str = Field(description="Why the previous connection ended.")


class OverflowFields(StatusFields):
    """The journal was full: records were dropped before they were published."""

    dropped: int = Field(description="Number of records dropped.")
    reason: str = Field(
        description="Why: a journal limit (max_bytes or max_age); memory_full (the disk "
        "could not be written and the memory buffer was full, since 2.2.0); damaged "
        "(found damaged on disk when the journal was opened, since 2.2.0)."
    )
    first_record: int = Field(
        description="Journal id of the first dropped record (0 when it cannot be known)."
    )
    last_record: int = Field(
        description="Journal id of the last dropped record (0 when it cannot be known)."
    )


class ResyncEntry(BaseModel):
    """What one entry of the resync plan gave."""

    model_config = ConfigDict(frozen=True, extra="allow")

    entry: str = Field(description="The entry as configured, e.g. `PJSIPShowEndpoints|SIPpeers`.")
    action: str | None = Field(description="The action that answered; null when none did.")
    items: int = Field(description="How many snapshot messages it produced.")


class ResyncFields(StatusFields):
    """A state resync after a login: ``started`` precedes its ``snapshot`` messages, and
    ``done`` follows them with what each action gave."""

    # Optional in the schema only because contract 1.0.0 did not require it: the bridge
    # always sends it.
    phase: Literal["started", "done"] | None = Field(default=None, description="started, or done.")
    actions: list[str] | None = Field(
        default=None, description="With started: the plan, one `A|B|C` entry each."
    )
    results: list[ResyncEntry] | None = Field(
        default=None, description="With done: the outcome of each entry, in order."
    )


class RefusedFields(StatusFields):
    """The broker refused a message every time it was published (nacked or returned it):
    the bridge gave up on it.  Since contract 2.1.0."""

    message_id: str = Field(description="The `id` of the message given up on.")
    event: str = Field(description="Its event (or status) name.")
    routing_key: str = Field(description="Its routing key.")
    outcome: Literal["nacked", "returned"] = Field(description="What the broker did last.")
    attempts: int = Field(description="How many times it was published.")
    reason: str = Field(description="The broker's last answer, e.g. `312 NO_ROUTE`.")


class JournalFields(StatusFields):
    """The journal's disk could not be written (``unavailable``): events are published
    straight from a bounded memory buffer, and are lost if the bridge stops meanwhile; or it
    can be written again (``recovered``).  Since contract 2.2.0."""

    state: Literal["unavailable", "recovered"] = Field(description="unavailable, or recovered.")
    reason: str = Field(description="The operating system's error, e.g. `No space left on device`.")
    unwritten: int = Field(
        description="With recovered: events of the outage that were not journalled."
    )
    dropped: int = Field(
        description="With recovered: events of the outage dropped because the memory buffer "
        "was full (also announced by overflow, reason memory_full)."
    )


class ActiveFields(StatusFields):
    """This bridge took over publishing as the active member of a hot-standby pair.
    Since contract 2.3.0."""

    instance: str = Field(description="The member that took over (its instance id).")
    checkpoint: str | None = Field(
        description="The `event_id` of the last checkpoint it saw from the previous active, "
        "null when it saw none."
    )
    checkpoint_found: bool = Field(
        description="True when that checkpoint was in its journal: everything after it was "
        "published again."
    )
    republished: int = Field(description="Records it published again from its journal.")
    not_covered: str | None = Field(
        description="What it could not cover (events the previous active may have read "
        "after its checkpoint and before this member's journal begins), or null."
    )


StatusFieldsT = TypeVar("StatusFieldsT", bound=StatusFields)


class StatusMessage(CommonEnvelope, Generic[StatusFieldsT]):
    """One status message; ``StatusMessage[GapFields]`` is a gap message."""

    kind: Literal["status"] = Field(description="status.")
    event: str = Field(description="The status: connected, disconnected, gap...")
    privilege: list[str] = Field(max_length=0, description="Always empty.")
    timestamp: None = Field(description="Always null: the bridge has no Asterisk time.")
    fields: StatusFieldsT = Field(description="The status's own keys.")


#: Status name (the ``event`` key and the last routing key segment) -> its fields model.
STATUS_FIELDS: Mapping[str, type[StatusFields]] = MappingProxyType(
    {
        "connected": ConnectedFields,
        "disconnected": DisconnectedFields,
        "gap": GapFields,
        "overflow": OverflowFields,
        "resync": ResyncFields,
        "refused": RefusedFields,
        "journal": JournalFields,
        "active": ActiveFields,
    }
)
