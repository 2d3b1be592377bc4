"""One simulated manager session: its state, and its answer to each action, as in Asterisk.

Approach
--------
A :class:`SimulatorSession` keeps what Asterisk keeps per manager session: whether it is
logged in, its event mask and its MD5 challenge.  :class:`SessionActions` answers the
requests of one session in order, through a table from lower-case action name to
handler, the way Asterisk's per-session thread does: a failed login's delay holds up
that session only.  Replies echo ``ActionID`` only when the request had a non-empty one,
and every reply goes through :func:`~bridge.ami.protocol.serialize`.

``Originate`` answers as ``action_originate`` in Asterisk's ``main/manager.c`` does: a
missing ``Channel`` or one without a ``/`` is an error; with ``Async: true`` the answer
is ``Originate successfully queued`` at once and, :attr:`originate_delay` seconds later,
an ``OriginateResponse`` event (class ``call``) whose first header after ``Privilege``
is the request's ``ActionID``, then ``Response: Success``, ``Channel``, ``Context`` and
``Exten`` (or ``Application`` and ``Data``), ``Reason: 4`` (answered), ``Uniqueid`` and the
caller id; without it, the same answer comes after the delay and no event.  A channel
whose technology is ``Fail`` (``Fail/anything``) is not answered: the event says
``Response: Failure`` with ``Reason: 0``, and a sync Originate answers
``Originate failed``.

List actions (``CoreShowChannels``, ``DeviceStateList``, ``ExtensionStateList``,
``QueueStatus``, ``PJSIPShowEndpoints``) answer as Asterisk does, in one write: a
``Response: Success`` with ``EventList: start``, the item events, then a ``...Complete``
event with ``EventList: Complete`` and ``ListItems``.  The state lists are modelled for
Asterisk 22 only; a legacy simulator answers them as unknown commands.  ``SIPpeers`` and
``IAXpeerlist`` are unknown too, as on an Asterisk without chan_sip and chan_iax2.

``ListCommands`` answers as ``action_listcommands`` does: ``Response: Success`` (and the
``ActionID``), then one header per action the simulator answers, ``Name: synopsis (Priv:
classes)``, sorted without regard to case as Asterisk keeps its action list, with the
synopses and privilege classes Asterisk 22 registers them with.

:class:`SessionActions` is mixed into :class:`~bridge.ami.simulator.AmiSimulator`, which
owns the connections; the attributes it needs from there are declared on the class.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

from bridge.ami.event_mask import ALL_CLASSES, PERMS, parse_event_mask
from bridge.ami.protocol import AmiParser, Header, Item, Message, serialize
from bridge.ami.shapes import (
    ListItem,
    Phone,
    device_state_items,
    endpoint_items,
    extension_state_items,
    queue_status_items,
)
from bridge.ami.simulator_io import SessionIO
from bridge.ami.traffic import TrafficGenerator

__all__ = ["SessionActions", "SimulatorSession"]

_PRE_LOGIN_ACTIONS = frozenset({"login", "logoff", "challenge"})


def _reply(request: Message, status: str, *headers: Header) -> list[Header]:
    # Asterisk echoes ActionID only when the request had a non-empty one.
    action_id = request.action_id
    head = [("Response", status), ("ActionID", action_id)] if action_id else [("Response", status)]
    return [*head, *headers]


def _list_answer(
    request: Message,
    message: str,
    items: Sequence[ListItem],
    complete: str,
    *,
    action_id_last: bool = False,
) -> list[list[Header]]:
    """A list action's whole answer: response, items, ``Complete`` event.

    Most items carry ``ActionID`` right after ``Event``; app_queue appends it last.
    """
    action_id = request.action_id
    tag = [("ActionID", action_id)] if action_id else []
    events = [
        [("Event", name), *body, *tag] if action_id_last else [("Event", name), *tag, *body]
        for name, body in items
    ]
    done = [("Event", complete), *tag, ("EventList", "Complete"), ("ListItems", str(len(items)))]
    return [_reply(request, "Success", ("EventList", "start"), ("Message", message)), *events, done]


class SimulatorSession:
    """One client connection and what Asterisk keeps per manager session.

    Lives on the simulator's event loop; its socket is served by :attr:`io` in a thread.
    """

    #: The session's socket, set by the server right after creating the session.
    io: SessionIO

    def __init__(self) -> None:
        self.parser = AmiParser(expect_banner=False)
        self.logged_in = False
        self.mask = ALL_CLASSES
        self.challenge = ""
        self.peer = "a client"
        #: What the client sent, parsed, in order; None once the connection is gone.
        self.requests: asyncio.Queue[Item | None] = asyncio.Queue()

    def feed(self, data: bytes) -> None:
        for item in self.parser.feed(data):
            self.requests.put_nowait(item)

    def feed_eof(self) -> None:
        self.requests.put_nowait(None)

    def is_open(self) -> bool:
        return self.io.is_open()

    def accepts(self, mask: int) -> bool:
        return self.mask & mask == mask

    def send_raw(self, data: bytes) -> None:
        self.io.put((data,))

    def send(self, *messages: list[Header]) -> None:
        """Queue ``messages`` for the socket, each one message for the write deadline."""
        self.io.put([serialize(m) for m in messages])

    def close(self) -> None:
        """Close after what was queued reaches the socket (``Goodbye``, failed login)."""
        self.io.close()

    def abort(self) -> None:
        self.io.abort()


_Handler = Callable[["SessionActions", SimulatorSession, Message], Awaitable[None]]


class SessionActions:
    """Answers each session's actions; mixed into the server that owns the sessions."""

    # Provided by that server:
    user: str
    auth_failure_delay: float
    answer_pings: bool
    legacy: bool
    _secret: str
    _clock: Callable[[], float]
    _started_at: float
    _traffic: TrafficGenerator
    #: Held while reading :attr:`_traffic`: the producer's thread advances it.
    _traffic_lock: threading.Lock
    #: Seconds an Originate takes to be answered (how long the simulated call rings).
    originate_delay: float = 0.05
    _originated = 0

    def _notify(self) -> None:
        """Wake whoever waits for the set of logged-in sessions to change."""
        raise NotImplementedError

    async def _dispatch(self, session: SimulatorSession, request: Message) -> None:
        action = (request.get("Action") or "").strip()
        name = action.lower()
        if not name:
            session.send(_reply(request, "Error", ("Message", "Missing action in request")))
        elif not session.logged_in and name not in _PRE_LOGIN_ACTIONS:
            session.send(_reply(request, "Error", ("Message", "Permission denied")))
        elif (handler := _ACTIONS.get(name)) is not None:
            await handler(self, session, request)
        elif not self.legacy and (lister := _STATE_LISTS.get(name)) is not None:
            session.send(*lister(self, request))
        else:
            hint = "Use Action: ListCommands to show available commands."
            message = f"Invalid/unknown command: {action}. {hint}"
            session.send(_reply(request, "Error", ("Message", message)))

    async def _login(self, session: SimulatorSession, request: Message) -> None:
        if session.logged_in:
            session.send(_reply(request, "Success", ("Message", "Already authenticated")))
            return
        if not self._credentials_ok(session, request):
            await asyncio.sleep(self.auth_failure_delay)
            session.send(_reply(request, "Error", ("Message", "Authentication failed")))
            session.close()
            return
        mask = parse_event_mask(request.get("Events"))
        if mask is not None:
            session.mask = mask
        session.logged_in = True
        accepted = _reply(request, "Success", ("Message", "Authentication accepted"))
        if session.accepts(PERMS["system"]):
            uptime = str(int(time.monotonic() - self._started_at))
            booted = [("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", uptime)]
            session.send(accepted, [*booted, ("LastReload", uptime), ("Status", "Fully Booted")])
        else:
            session.send(accepted)
        self._notify()

    def _credentials_ok(self, session: SimulatorSession, request: Message) -> bool:
        # Asterisk matches the user name with strcasecmp and the secret with strcmp.
        if (request.get("Username") or "").lower() != self.user.lower():
            return False
        if (request.get("AuthType") or "").lower() == "md5":
            if not session.challenge:
                return False
            expected = hashlib.md5((session.challenge + self._secret).encode()).hexdigest()
            return hmac.compare_digest(expected, request.get("Key") or "")
        return hmac.compare_digest(self._secret.encode(), (request.get("Secret") or "").encode())

    async def _challenge(self, session: SimulatorSession, request: Message) -> None:
        if (request.get("AuthType") or "").lower() != "md5":
            session.send(_reply(request, "Error", ("Message", "Must specify AuthType")))
            return
        if not session.challenge:
            session.challenge = str(secrets.randbelow(2**31))
        session.send(_reply(request, "Success", ("Challenge", session.challenge)))

    async def _logoff(self, session: SimulatorSession, request: Message) -> None:
        session.send(_reply(request, "Goodbye", ("Message", "Thanks for all the fish.")))
        session.close()

    async def _ping(self, session: SimulatorSession, request: Message) -> None:
        if self.answer_pings:
            stamp = f"{self._clock():.6f}"
            session.send(_reply(request, "Success", ("Ping", "Pong"), ("Timestamp", stamp)))

    async def _events(self, session: SimulatorSession, request: Message) -> None:
        mask = parse_event_mask(request.get("EventMask"))
        if mask is None:
            session.send(_reply(request, "Error", ("Message", "Invalid event mask")))
            return
        session.mask = mask
        session.send(_reply(request, "Success", ("Events", "On" if mask else "Off")))

    async def _originate(self, session: SimulatorSession, request: Message) -> None:
        channel = (request.get("Channel") or "").strip()
        tech, slash, data = channel.partition("/")
        if not channel:
            session.send(_reply(request, "Error", ("Message", "Channel not specified")))
            return
        if not slash or not tech or not data:
            session.send(_reply(request, "Error", ("Message", "Invalid channel")))
            return
        answered = tech.lower() != "fail"
        asynchronous = (request.get("Async") or "").strip().lower() in ("true", "yes", "1", "on")
        if not asynchronous:
            await asyncio.sleep(self.originate_delay)
            if answered:
                session.send(
                    _reply(request, "Success", ("Message", "Originate successfully queued"))
                )
            else:
                session.send(_reply(request, "Error", ("Message", "Originate failed")))
            return
        session.send(_reply(request, "Success", ("Message", "Originate successfully queued")))
        event = self._originate_response(request, channel, answered)
        loop = asyncio.get_running_loop()
        loop.call_later(self.originate_delay, self._send_event, session, event, PERMS["call"])

    def _originate_response(self, request: Message, channel: str, answered: bool) -> list[Header]:
        self._originated += 1
        action_id = request.action_id
        # manager.c prints the idtext ("ActionID: ...") first, when the request had one.
        head: list[Header] = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        if action_id:
            head.append(("ActionID", action_id))
        application = request.get("Application")
        if application:
            target = [("Application", application), ("Data", request.get("Data") or "")]
        else:
            target = [
                ("Context", request.get("Context") or ""),
                ("Exten", request.get("Exten") or ""),
            ]
        uniqueid = f"{int(self._clock())}.{1000 + self._originated}" if answered else "<unknown>"
        return [
            *head,
            ("Response", "Success" if answered else "Failure"),
            ("Channel", f"{channel}-{self._originated:08x}" if answered else channel),
            *target,
            ("Reason", "4" if answered else "0"),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", "<unknown>"),
            ("CallerIDName", "<unknown>"),
        ]

    @staticmethod
    def _send_event(session: SimulatorSession, event: list[Header], mask: int) -> None:
        if session.is_open() and session.logged_in and session.accepts(mask):
            session.send(event)

    async def _core_show_channels(self, session: SimulatorSession, request: Message) -> None:
        with self._traffic_lock:
            bodies = self._traffic.show_channels()
        items = [("CoreShowChannel", body) for body in bodies]
        complete = "CoreShowChannelsComplete"
        session.send(*_list_answer(request, "Channels will follow", items, complete))

    # -- state lists (Asterisk 22) ------------------------------------------------------

    def _phones(self) -> list[Phone]:
        with self._traffic_lock:
            return self._traffic.phones()

    def _device_state_list(self, request: Message) -> list[list[Header]]:
        items = device_state_items(self._phones())
        message = "Device State Changes will follow"
        return _list_answer(request, message, items, "DeviceStateListComplete")

    def _extension_state_list(self, request: Message) -> list[list[Header]]:
        items = extension_state_items(self._phones())
        message = "Extension Statuses will follow"
        return _list_answer(request, message, items, "ExtensionStateListComplete")

    def _queue_status(self, request: Message) -> list[list[Header]]:
        booted_at = self._clock() - (time.monotonic() - self._started_at)
        items = queue_status_items(self._phones(), int(booted_at))
        message = "Queue status will follow"
        return _list_answer(request, message, items, "QueueStatusComplete", action_id_last=True)

    async def _list_commands(self, session: SimulatorSession, request: Message) -> None:
        names = [*_ACTIONS, *(() if self.legacy else _STATE_LISTS)]
        listed = sorted((_COMMANDS[name] for name in names), key=lambda c: c[0].lower())
        lines = [(name, f"{synopsis} (Priv: {priv})") for name, synopsis, priv in listed]
        session.send(_reply(request, "Success", *lines))

    def _pjsip_show_endpoints(self, request: Message) -> list[list[Header]]:
        items = endpoint_items(self._phones())
        message = "A listing of Endpoints follows, presented as EndpointList events"
        return _list_answer(request, message, items, "EndpointListComplete")


_ACTIONS: dict[str, _Handler] = {
    "login": SessionActions._login,
    "challenge": SessionActions._challenge,
    "logoff": SessionActions._logoff,
    "ping": SessionActions._ping,
    "events": SessionActions._events,
    "coreshowchannels": SessionActions._core_show_channels,
    "originate": SessionActions._originate,
    "listcommands": SessionActions._list_commands,
}

#: Lower-case action -> (name, synopsis, privilege classes) as Asterisk 22 registers it.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "login": ("Login", "Login Manager.", "<none>"),
    "challenge": ("Challenge", "Generate Challenge for MD5 Auth.", "<none>"),
    "logoff": ("Logoff", "Logoff Manager.", "<none>"),
    "ping": ("Ping", "Keepalive command.", "<none>"),
    "events": ("Events", "Control Event Flow.", "<none>"),
    "coreshowchannels": (
        "CoreShowChannels",
        "List currently active channels.",
        "system,reporting",
    ),
    "originate": ("Originate", "Originate a call.", "originate"),
    "listcommands": ("ListCommands", "List available manager commands.", "<none>"),
    "devicestatelist": (
        "DeviceStateList",
        "List the current known device states.",
        "call,reporting",
    ),
    "extensionstatelist": (
        "ExtensionStateList",
        "List the current known extension states.",
        "call,reporting",
    ),
    "queuestatus": ("QueueStatus", "Show queue status.", "<none>"),
    "pjsipshowendpoints": ("PJSIPShowEndpoints", "Lists PJSIP endpoints.", "system"),
}

#: List actions modelled for Asterisk 22 only: request -> the whole answer.
_STATE_LISTS: dict[str, Callable[[SessionActions, Message], list[list[Header]]]] = {
    "devicestatelist": SessionActions._device_state_list,
    "extensionstatelist": SessionActions._extension_state_list,
    "queuestatus": SessionActions._queue_status,
    "pjsipshowendpoints": SessionActions._pjsip_show_endpoints,
}
