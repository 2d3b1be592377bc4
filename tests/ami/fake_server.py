"""A small scriptable AMI server on 127.0.0.1 for the client and session tests.

It speaks through the project's own codec: :class:`AmiParser` (``expect_banner=False``)
reads the actions and :func:`serialize` writes every reply, so only the banner line (not
an AMI message) and deliberately split bytes are written by hand.  The built-in actions
follow Asterisk's behaviour from the wire facts: ``Challenge``/``Login`` (MD5 key over
challenge + secret, lower-case hex), ``Permission denied`` before login, a refused login
answered after a delay and followed by a close, ``Ping``, ``Events`` and ``Logoff``.
Tests add actions through :attr:`FakeAmiServer.handlers` and switch behaviour with the
public attributes (``answer_ping`` and so on) while the server runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from bridge.ami.protocol import AmiParser, HeaderInput, Message, serialize
from bridge.ami.target import AmiTarget

Handler = Callable[["ServerConnection", Message], Awaitable[None]]

FULLY_BOOTED: list[tuple[str, str]] = [
    ("Event", "FullyBooted"),
    ("Privilege", "system,all"),
    ("Uptime", "179"),
    ("LastReload", "93"),
    ("Status", "Fully Booted"),
]


def reply(action: Message, status: str = "Success", *headers: tuple[str, str]) -> HeaderInput:
    """A response to ``action``: ``Response``, the echoed ``ActionID``, then ``headers``."""
    pairs = [("Response", status)]
    if action.action_id:
        pairs.append(("ActionID", action.action_id))
    pairs.extend(headers)
    return pairs


@dataclass(eq=False)
class ServerConnection:
    """The server side of one client connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened_at: float
    actions: list[Message] = field(default_factory=list)
    logged_in: bool = False
    challenge: str | None = None
    #: Bytes to put in front of the next write (a banner held back, say).
    pending_prefix: bytes = b""

    async def send(self, *messages: HeaderInput) -> None:
        """Write ``messages`` in one write."""
        await self.write_raw(b"".join(serialize(message) for message in messages))

    async def write_raw(self, data: bytes) -> None:
        data, self.pending_prefix = self.pending_prefix + data, b""
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        """Drop the connection at once, as a crashed Asterisk or a cut cable would."""
        self.writer.transport.abort()

    def actions_named(self, name: str) -> list[Message]:
        return [a for a in self.actions if (a.get("Action") or "").lower() == name.lower()]


class FakeAmiServer:
    """A fake Asterisk manager on ``127.0.0.1`` and an ephemeral port."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        banner: str | None = "Asterisk Call Manager/11.0.0",
        banner_chunks: int = 1,
        banner_with_first_response: bool = False,
        md5_only: bool = False,
        challenge: str = "515494335",
        failed_login_delay: float = 0.0,
        after_login: list[HeaderInput] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.users = users if users is not None else {"bridge": "s3cret"}
        self.banner = banner
        self.banner_chunks = banner_chunks
        self.banner_with_first_response = banner_with_first_response
        self.md5_only = md5_only
        self.challenge = challenge
        self.failed_login_delay = failed_login_delay
        self.after_login = after_login if after_login is not None else [FULLY_BOOTED]
        self.ssl_context = ssl_context
        self.answer_ping = True
        #: Extra actions, keyed by lower-case action name.
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.connections: list[ServerConnection] = []
        self._server: asyncio.Server | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self.connections:
            connection.abort()
        for task in self._handler_tasks:
            task.cancel()
        if self._handler_tasks:
            await asyncio.wait(self._handler_tasks)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def target(self, user: str = "bridge", *, tls: bool = False) -> AmiTarget:
        return AmiTarget(user=user, host="127.0.0.1", port=self.port, tls=tls)

    @property
    def latest(self) -> ServerConnection:
        return self.connections[-1]

    # -- serving ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handler_tasks.add(task)
        connection = ServerConnection(reader, writer, time.monotonic())
        self.connections.append(connection)
        try:
            await self._write_banner(connection)
            parser = AmiParser(expect_banner=False)
            while data := await reader.read(65536):
                for item in parser.feed(data):
                    assert isinstance(item, Message), item
                    connection.actions.append(item)
                    await self._on_action(connection, item)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
            self._handler_tasks.discard(task)

    async def _write_banner(self, connection: ServerConnection) -> None:
        if self.banner is None:
            return
        line = f"{self.banner}\r\n".encode()
        if self.banner_with_first_response:
            connection.pending_prefix = line
            return
        size = -(-len(line) // self.banner_chunks)
        for start in range(0, len(line), size):
            await connection.write_raw(line[start : start + size])
            if self.banner_chunks > 1:
                await asyncio.sleep(0.02)

    async def _on_action(self, connection: ServerConnection, action: Message) -> None:
        name = (action.get("Action") or "").lower()
        if name in self.handlers:
            await self.handlers[name](connection, action)
        elif name == "challenge":
            await self._challenge(connection, action)
        elif name == "login":
            await self._login(connection, action)
        elif name == "logoff":
            await connection.send(reply(action, "Goodbye", ("Message", "Thanks for all the fish.")))
            connection.writer.close()
        elif not connection.logged_in:
            await connection.send(reply(action, "Error", ("Message", "Permission denied")))
        elif name == "ping":
            if self.answer_ping:
                pong = [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
                await connection.send(reply(action, "Success", *pong))
        elif name == "events":
            await connection.send(reply(action, "Success", ("Events", "On")))
        else:
            await connection.send(reply(action, "Error", ("Message", "Invalid/unknown command")))

    async def _challenge(self, connection: ServerConnection, action: Message) -> None:
        if (action.get("AuthType") or "").lower() != "md5":
            await connection.send(reply(action, "Error", ("Message", "Must specify AuthType")))
            return
        connection.challenge = self.challenge
        await connection.send(reply(action, "Success", ("Challenge", self.challenge)))

    async def _login(self, connection: ServerConnection, action: Message) -> None:
        if self._credentials_ok(connection, action):
            connection.logged_in = True
            accepted = reply(action, "Success", ("Message", "Authentication accepted"))
            await connection.send(accepted, *self.after_login)
            return
        await asyncio.sleep(self.failed_login_delay)
        await connection.send(reply(action, "Error", ("Message", "Authentication failed")))
        connection.writer.close()

    def _credentials_ok(self, connection: ServerConnection, action: Message) -> bool:
        secret = self.users.get(action.get("Username") or "")
        if secret is None:
            return False
        if (action.get("AuthType") or "").lower() == "md5":
            if connection.challenge is None:
                return False
            expected = hashlib.md5((connection.challenge + secret).encode()).hexdigest()
            return action.get("Key") == expected
        return not self.md5_only and action.get("Secret") == secret

    def foreign_tasks(self) -> set[asyncio.Task[object]]:
        """Live tasks other than the current one and this server's connection handlers."""
        current = asyncio.current_task()
        return {
            task
            for task in asyncio.all_tasks()
            if task is not current and task not in self._handler_tasks and not task.done()
        }
