"""Opening one AMQP connection to one broker node, and naming every way it fails.

Approach
--------
aio-pika opens the connection; two things it does not do are added here by
subclassing, and nowhere else:

* **The broker's reason for refusing the open.**  A wrong virtual host is answered with
  ``Connection.Close`` instead of ``Connection.OpenOk``, and aiormq 7 reports it as
  ``Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x...>``,
  dropping the reply text.  :class:`_AmqpConnection` checks for the close first, so the
  error says what the broker said (``NOT_ALLOWED - vhost x not found``).
* **Resource alarms.**  aiormq handles ``Connection.Blocked`` and ``Unblocked`` frames
  but offers no callback; the connection here calls the ``alarms`` listener with the
  broker's reason (see :class:`AlarmListener`).

Every failure of :func:`open_connection` is a :class:`~bridge.publish.broker.BrokerError`
whose text names the node and the reason, in one line, without the password:
:class:`~bridge.publish.broker.BrokerRefused` when the broker answered no (credentials,
virtual host, a permission), :class:`~bridge.publish.broker.BrokerUnavailable` when it
could not be used at all.  :func:`broker_failure` does the same for errors raised later,
while declaring or consuming.

aiormq also logs some of these events itself (an ERROR per refused TCP connection or
broker-closed connection, a traceback per lost one, a WARNING per blocked frame); the
bridge logs each of them once with the node's name and the reason instead, so those
library lines are filtered out (:class:`_Restated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import aio_pika
import aiormq
import aiormq.connection
import pamqp.frame
import yarl
from aio_pika.abc import AbstractConnection, TimeoutType, UnderlayConnection
from pamqp import commands as spec

from bridge.publish.broker import (
    BrokerAuthError,
    BrokerError,
    BrokerRefused,
    BrokerUnavailable,
    TlsOptions,
    describe_failure,
    mask_url,
)

__all__ = ["AlarmListener", "broker_failure", "node_name", "open_connection"]

log = logging.getLogger(__name__)

#: What a broker failure raises (aiormq lets StopAsyncIteration out of a broken handshake).
_FAILURES = (aiormq.exceptions.AMQPError, OSError, TimeoutError, StopAsyncIteration, EOFError)


class AlarmListener(Protocol):
    """Told when the broker blocks publishing on a connection (a resource alarm) and when
    it lets it go again."""

    def on_blocked(self, reason: str) -> None: ...

    def on_unblocked(self) -> None: ...


def node_name(url: str) -> str:
    """``host:port`` of a broker URL, the way log lines name a node."""
    parsed = yarl.URL(url)
    port = parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    host = parsed.host or "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def broker_failure(error: BaseException, url: str, doing: str) -> BrokerError:
    """``error`` (raised while ``doing`` something on ``url``) as a one-line BrokerError."""
    where = node_name(url)
    why = describe_failure(error, url)
    if isinstance(
        error, aiormq.exceptions.ChannelAccessRefused | aiormq.exceptions.ConnectionNotAllowed
    ):
        return BrokerRefused(f"broker {where} refused {doing}: {why}")
    if isinstance(error, aiormq.exceptions.ChannelClosed) and error.args[:1] == (403,):
        return BrokerRefused(f"broker {where} refused {doing}: {why}")
    return BrokerUnavailable(f"broker {where} failed while {doing}: {why}")


async def open_connection(
    url: str,
    *,
    name: str,
    tls: TlsOptions | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - handed to aio-pika's connect
    heartbeat: int = 60,
    alarms: AlarmListener | None = None,
) -> AbstractConnection:
    """Connect to the one node at ``url``; ``name`` shows in the broker's connection list.

    Raises:
        BrokerAuthError: the broker refused the user name or password.
        BrokerRefused: the broker refused the virtual host.
        BrokerUnavailable: nothing answered, the handshake failed or timed out (including
            an untrusted certificate).
        OSError: a TLS file cannot be read or is not a certificate or key.
    """
    parsed = yarl.URL(url)
    where = node_name(url)
    ssl_context = tls.context() if tls and parsed.scheme == "amqps" else None
    target = parsed.update_query(heartbeat=str(heartbeat))
    connection = _Connection(
        target, ssl_context=ssl_context, client_properties={"connection_name": name}
    )
    connection.alarms = alarms
    try:
        try:
            await connection.connect(timeout=timeout)
        except BaseException:
            # Closed here, not left to aio-pika's __del__: when the collector runs on a
            # reader thread, with no loop there, its close() is never awaited (and warns).
            with contextlib.suppress(Exception):
                await connection.close()
            raise
    except aiormq.exceptions.ProbableAuthenticationError as e:
        raise BrokerAuthError(where, parsed.user or "", describe_failure(e, url)) from None
    except aiormq.exceptions.ConnectionNotAllowed as e:
        vhost = parsed.path[1:] or "/"
        why = describe_failure(e, url)
        raise BrokerRefused(f"broker {where} refused the virtual host {vhost!r}: {why}") from None
    except _FAILURES as e:
        why = describe_failure(e, url) if str(e) else _plain_reason(e)
        raise BrokerUnavailable(f"broker {mask_url(url)} unavailable: {why}") from None
    return connection


def _plain_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, StopAsyncIteration | EOFError | ConnectionResetError):
        return "the connection was closed during the handshake"
    return type(error).__name__


class _AmqpConnection(aiormq.Connection):
    """aiormq's connection, keeping the broker's reason for a refused open and reporting
    resource alarms."""

    def __init__(self, url: Any, *, alarms: AlarmListener | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._alarms = alarms

    @staticmethod
    async def _rpc(
        request: pamqp.frame.FrameTypes,
        writer: asyncio.StreamWriter,
        frame_receiver: Any,
        wait_response: bool = True,
    ) -> pamqp.frame.FrameTypes | None:
        # aiormq's own _rpc checks the expected answers before Connection.Close, so the
        # broker's reply text is lost: check the close first, then do as it does.
        writer.write(pamqp.frame.marshal(request, 0))
        await writer.drain()
        if not wait_response:
            return None
        frame: pamqp.frame.FrameTypes
        _, _, frame = await frame_receiver.get_frame()
        if isinstance(frame, spec.Connection.Close):
            if frame.reply_code == 403:
                raise aiormq.exceptions.ProbableAuthenticationError(frame.reply_text)
            raise aiormq.connection.exception_by_code(frame)
        if request.synchronous and frame.name not in request.valid_responses:  # type: ignore[union-attr]
            raise aiormq.exceptions.InvalidFrameError(
                f"expected one of {request.valid_responses!r}, got {frame.name}"  # type: ignore[union-attr]
            )
        return frame

    # aiormq dispatches these two frames to private handlers; overriding them (by their
    # mangled names) is the only way to hear of an alarm.  They keep aiormq's own state
    # (the unblocked event) as its handlers do.
    async def _Connection__handle_connection_blocked(  # noqa: N802
        self, frame: spec.Connection.Blocked
    ) -> None:
        self._Connection__connection_unblocked.clear()  # type: ignore[attr-defined]
        if self._alarms is not None:
            self._alarms.on_blocked(frame.reason or "no reason given")

    async def _Connection__handle_connection_unblocked(  # noqa: N802
        self, _frame: spec.Connection.Unblocked
    ) -> None:
        self._Connection__connection_unblocked.set()  # type: ignore[attr-defined]
        if self._alarms is not None:
            self._alarms.on_unblocked()


class _Underlay(UnderlayConnection):
    @classmethod
    async def make_connection(
        cls,
        url: yarl.URL,
        timeout: TimeoutType = None,  # noqa: ASYNC109 - aio-pika's signature
        **kwargs: Any,
    ) -> aiormq.abc.AbstractConnection:
        connection = _AmqpConnection(url, **kwargs)
        await asyncio.wait_for(connection.connect(), timeout=timeout)
        await connection.ready()
        return connection


class _Connection(aio_pika.Connection):
    """aio-pika's connection over :class:`_AmqpConnection`."""

    alarms: AlarmListener | None = None

    async def connect(self, timeout: TimeoutType = None) -> None:  # noqa: ASYNC109
        self.transport = await _Underlay.connect(
            self.url,
            self._on_connection_close,
            timeout=timeout,
            alarms=self.alarms,
            **self.kwargs,
        )
        await self._on_connected()


class _Restated(logging.Filter):
    """Drops aiormq's lines about events the bridge logs itself, naming the node."""

    _PREFIXES = (
        "error when creating transport",
        "Connection %r was blocked",
        "Connection %r was unblocked",
        # A lost connection: the publisher logs it with the node and the reason.
        "Unexpected connection close from remote",
        "Cancelling cause reader exited abnormally",
        "Server connection %r was stuck.",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self._PREFIXES))


logging.getLogger("aiormq.connection").addFilter(_Restated())
