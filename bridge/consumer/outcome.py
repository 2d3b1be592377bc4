"""Wait on the event exchange for the event an action causes later, matched by ActionID.

An async ``Originate`` is answered at once ("successfully queued"); its outcome comes
later as an ``OriginateResponse`` event that carries the request's ActionID (Asterisk's
``main/manager.c`` copies it into the event).  :class:`ActionOutcome` binds an
exclusive queue to that event's routing keys *before* the request goes out, so an
outcome that is published before the reply arrives is not missed, then picks out the
event whose ``ActionID`` is the one the bridge sent (the reply's ``action_id``)::

    async with ActionOutcome(url, server="pbx1") as outcome:
        reply = await client.call("pbx1", "Originate", headers, correlation="job-42")
        event = await outcome.wait(reply.action_id, timeout=60)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from bridge.consumer.consumer import Consumer
from bridge.consumer.messages import EventMessage
from bridge.publish.routing import escape_segment, validate_server_id
from bridge.publish.topology import DEFAULT_EXCHANGE

__all__ = ["ActionOutcome", "OutcomeEvent"]


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """The event that answered an action later."""

    message: EventMessage
    #: The body exactly as published.
    body: bytes


class ActionOutcome:
    """Events ``event`` of ``server``, waited for by ActionID.

    Raises:
        ValueError: ``server`` is not a valid server id.
    """

    def __init__(
        self,
        url: str,
        *,
        server: str,
        exchange: str = DEFAULT_EXCHANGE,
        event: str = "OriginateResponse",
    ) -> None:
        segment = escape_segment(validate_server_id(server)).lower()
        self.event = event
        self._consumer = Consumer(
            url,
            exchange=exchange,
            patterns=[f"{segment}.*.{escape_segment(event).lower()}"],
            dead_letters=False,
            declare_exchange=False,
        )

    async def __aenter__(self) -> ActionOutcome:
        """Bind the queue (call before sending the action).

        Raises:
            ConsumerError: the broker cannot be used or the exchange does not exist.
        """
        await self._consumer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._consumer.close()

    async def wait(self, action_id: str, timeout: float) -> OutcomeEvent:  # noqa: ASYNC109
        """The first ``event`` carrying ``action_id``; others are acked and passed over.

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            async for delivery in self._consumer:
                await delivery.ack()
                message = delivery.message
                if not isinstance(message, EventMessage):
                    continue
                if message.event.lower() != self.event.lower():
                    continue
                if getattr(message.fields, "ActionID", None) == action_id:
                    return OutcomeEvent(message, delivery.body)
        raise TimeoutError  # the consumer closed under us: no outcome will come
