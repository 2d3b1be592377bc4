"""Events and fields of older Asterisk versions (1.4 to 11), written by hand.

Approach
--------
A bridge may face any Asterisk still in service, so an event name means the union of
what every generation sent under it.  Where current Asterisk still documents the name
(``Newchannel``, ``Hangup``, ``PeerStatus``...), the class here subclasses the generated
one and adds the older fields as optional extras (``State``, ``CallerID``).  Names that
current Asterisk no longer sends (``Dial``, ``Link``, ``Unlink``, ``ChannelReload``,
``WaitEventComplete``) get a class of their own.  :data:`MODELS` lists them all, and the
registry lets them take the place of the generated class of the same name.

Field lists come from the 1.4-era manager events (``manager_event`` calls in
``channel.c``, ``app_dial.c``, ``chan_sip.c`` and ``manager.c`` of those versions) and
from the 1.6-11 forms where a name was reused (``Dial`` with ``SubEvent``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bridge.events import generated
from bridge.events.base import AmiEvent

__all__ = [
    "MODELS",
    "ChannelReload",
    "Dial",
    "Link",
    "NewCallerid",
    "Newchannel",
    "Newstate",
    "PeerStatus",
    "Reload",
    "Unlink",
    "WaitEventComplete",
]

#: PeerStatus values of every generation: chan_sip and chan_iax2 (1.4-11) sent
#: Reachable/Unreachable/Lagged for qualify results, current Asterisk documents the rest.
PeerStatusValue = Literal[
    "Unknown",
    "Registered",
    "Unregistered",
    "Rejected",
    "Lagged",
    "Reachable",
    "Unreachable",
]

#: ``Dial`` of 1.6-11 came in two halves.
DialSubEventValue = Literal["Begin", "End"]


class PeerStatus(generated.PeerStatus):
    """A peer registered, unregistered, or changed reachability (``qualify``).

    ``Peer`` is ``TECH/name`` (``SIP/101``, ``PJSIP/alice``).  ``Time`` is the latency
    of the last qualify in milliseconds, -1 when unreachable; it is accepted with any
    status, as chan_sip also sent it along with ``Registered``.
    """

    # Peer and PeerStatus are required: every generation writes both, and an event
    # without them says nothing.
    Peer: str = Field(description="The peer as TECH/name, e.g. SIP/101.")
    PeerStatus: PeerStatusValue | str = Field(description="The new status of the peer.")
    Time: int | None = Field(
        None, description="Qualify latency in milliseconds; -1 means unreachable."
    )


class Newchannel(generated.Newchannel):
    """A channel was created.  1.4 sent the state name as ``State``."""

    State: str | None = Field(None, description="1.4: channel state name (Down, Ring...).")
    CallerID: str | None = Field(None, description="1.2: caller ID number.")


class Newstate(generated.Newstate):
    """A channel changed state.  1.4 sent ``State`` and the number as ``CallerID``."""

    State: str | None = Field(None, description="1.4: channel state name (Ring, Up...).")
    CallerID: str | None = Field(None, description="1.4: caller ID number.")


class NewCallerid(generated.NewCallerid):
    """Caller ID changed (``Newcallerid`` before 1.6, with ``CallerID`` for the number)."""

    CallerID: str | None = Field(None, description="1.4: caller ID number.")


class Reload(generated.Reload):
    """A module or the whole configuration was reloaded (1.4: ``Message`` only)."""

    Message: str | None = Field(None, description="1.4: e.g. `Reload Requested`.")


class Dial(AmiEvent):
    """A channel dials another (1.4 to 11; replaced by DialBegin/DialEnd in 12).

    1.4 sent one event with ``Source``/``Destination``, ``SrcUniqueID`` and
    ``DestUniqueID``.  1.6 to 11 sent ``SubEvent: Begin`` (``Channel``, ``Destination``,
    ``UniqueID``, ``DestUniqueID``, ``Dialstring``) and ``SubEvent: End`` (``Channel``,
    ``UniqueID``, ``DialStatus``).
    """

    event_name: ClassVar[str] = "Dial"
    privilege_class: ClassVar[str | None] = "call"

    SubEvent: DialSubEventValue | str | None = Field(None, description="1.6-11: Begin or End.")
    Source: str | None = Field(None, description="1.4: the calling channel.")
    Channel: str | None = Field(None, description="1.6-11: the calling channel.")
    Destination: str | None = Field(None, description="The dialled channel.")
    CallerID: str | None = Field(None, description="1.4: caller ID number.")
    CallerIDNum: str | None = Field(None, description="1.6-11: caller ID number.")
    CallerIDName: str | None = Field(None, description="Caller ID name.")
    ConnectedLineNum: str | None = Field(None, description="1.8-11: connected line number.")
    ConnectedLineName: str | None = Field(None, description="1.8-11: connected line name.")
    SrcUniqueID: str | None = Field(None, description="1.4: unique id of the caller.")
    UniqueID: str | None = Field(None, description="1.6-11: unique id of the caller.")
    DestUniqueID: str | None = Field(None, description="Unique id of the dialled channel.")
    Dialstring: str | None = Field(None, description="1.6-11 Begin: the dial string.")
    DialStatus: str | None = Field(None, description="1.6-11 End: ANSWER, BUSY...")


class Link(AmiEvent):
    """Both peers are bridged together: the called party answered (1.4).

    Replaced by ``Bridge`` (1.6-11) and ``BridgeEnter`` (12 and later).
    """

    event_name: ClassVar[str] = "Link"
    privilege_class: ClassVar[str | None] = "call"

    # Both channels are required: naming the two bridged peers is what the event is for.
    Channel1: str = Field(description="First bridged channel.")
    Channel2: str = Field(description="Second bridged channel.")
    Uniqueid1: str | None = Field(None, description="Unique id of Channel1.")
    Uniqueid2: str | None = Field(None, description="Unique id of Channel2.")
    CallerID1: str | None = Field(None, description="Caller ID of Channel1.")
    CallerID2: str | None = Field(None, description="Caller ID of Channel2.")


class Unlink(Link):
    """The two peers are no longer bridged (1.4 to 1.8; gone by Asterisk 10)."""

    event_name: ClassVar[str] = "Unlink"


class ChannelReload(AmiEvent):
    """A channel driver reloaded its configuration (chan_sip and others, 1.4 to 20)."""

    event_name: ClassVar[str] = "ChannelReload"
    privilege_class: ClassVar[str | None] = "system"

    Channel: str | None = Field(None, description="The channel driver, e.g. SIP.")
    ChannelType: str | None = Field(None, description="The channel driver (some drivers).")
    ReloadReason: str | None = Field(None, description="e.g. `RELOAD (Channel module reload)`.")
    Registry_Count: int | None = Field(None, description="Outbound registrations loaded.")
    Peer_Count: int | None = Field(None, description="Peers loaded.")
    User_Count: int | None = Field(None, description="Users loaded.")


class WaitEventComplete(AmiEvent):
    """The ``WaitEvent`` action finished: the events it waited for were sent (1.4-11)."""

    event_name: ClassVar[str] = "WaitEventComplete"
    response_to: ClassVar[tuple[str, ...]] = ("WaitEvent",)


MODELS: tuple[type[AmiEvent], ...] = (
    ChannelReload,
    Dial,
    Link,
    NewCallerid,
    Newchannel,
    Newstate,
    PeerStatus,
    Reload,
    Unlink,
    WaitEventComplete,
)
