"""Which action an AMI response or list event answers: routing by ActionID.

Approach
--------
Each action gets a fresh ``ActionID`` (``amib-<n>``, or ``amib-<n>/<tag>`` when the
caller tags it, so that an event the action causes later, such as an async Originate's
``OriginateResponse``, can be told apart) and a pending entry keyed by it,
with a future for its :class:`ActionResult`.  A response resolves its entry; a list
action (``EventList: start``) stays open and collects the events carrying its ActionID
until the one with ``EventList: Complete``.  What answers no waiting action is handed
back to the caller (the routing methods return False), which decides where it goes:
events join the event stream, a stray response is dropped.  Nothing here reads or
writes a socket.

The routing methods may run on a reader thread while the event loop registers and
forgets actions: the table is guarded by a lock, the answer hook runs on the routing
thread (at the answer's place in the stream), and the future is settled through
``resolve``, which a threaded reader points at the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.ami.errors import AmiConnectionError
from bridge.ami.protocol import Event, Response

__all__ = [
    "ActionResult",
    "AnswerHook",
    "PendingActions",
]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The answer to one action: its response and, for list actions, the item events."""

    response: Response
    #: Item events of a list action, in wire order, without the closing event.
    events: list[Event] = field(default_factory=list)
    #: The ``EventList: Complete`` event that closed a list action (it has ``ListItems``).
    complete: Event | None = None

    @property
    def ok(self) -> bool:
        """True unless the response is ``Response: Error`` (or another failure status)."""
        return self.response.is_success


#: Called by the reader with an action's answer, at the answer's place in the stream.
AnswerHook = Callable[[ActionResult], None]
#: Settles an action's future with its answer (where the future's loop allows it).
Resolver = Callable[["asyncio.Future[ActionResult]", ActionResult], None]


def _set_result(future: asyncio.Future[ActionResult], result: ActionResult) -> None:
    if not future.done():
        future.set_result(result)


@dataclass(slots=True)
class _PendingAction:
    future: asyncio.Future[ActionResult]
    on_answer: AnswerHook | None = None
    response: Response | None = None
    events: list[Event] = field(default_factory=list)
    #: Set once the answer is complete: the future may be settled later, on its loop.
    answered: bool = False


def _is_list_start(response: Response) -> bool:
    return (response.get("EventList") or "").lower() == "start"


def _is_list_complete(event: Event) -> bool:
    return (event.get("EventList") or "").lower() == "complete"


class PendingActions:
    """The actions of one connection that wait for their answer, keyed by ActionID."""

    def __init__(
        self, flush: Callable[[], None] = lambda: None, resolve: Resolver = _set_result
    ) -> None:
        """``flush`` hands on the stream items read so far; it runs before an answer hook.

        ``resolve`` settles a future with its answer; by default at once, which is right
        when routing runs on the future's event loop.
        """
        self._ids = itertools.count(1)
        self._pending: dict[str, _PendingAction] = {}
        self._lock = threading.Lock()
        self._flush = flush
        self._resolve = resolve

    def new_id(self, tag: str | None = None) -> str:
        """A fresh ActionID, never handed out before by this instance.

        ``tag`` (no ``/`` in it) is appended after a ``/``: the number keeps two actions
        with the same tag apart, and the bridge's untagged ids never hold a ``/``.
        """
        number = next(self._ids)
        return f"amib-{number}/{tag}" if tag else f"amib-{number}"

    def expect(
        self, action_id: str, on_answer: AnswerHook | None = None
    ) -> asyncio.Future[ActionResult]:
        """Register ``action_id`` as waiting; the future resolves with its answer.

        ``on_answer`` is called synchronously when the answer is complete, after every
        stream item read before it has been flushed and before any read after it: the
        caller can record the answer at its exact place in the event stream.
        """
        pending = _PendingAction(asyncio.get_running_loop().create_future(), on_answer)
        with self._lock:
            self._pending[action_id] = pending
        return pending.future

    def forget(self, action_id: str) -> None:
        """Stop waiting for ``action_id`` (answered, timed out or failed)."""
        with self._lock:
            del self._pending[action_id]

    def fail_all(self, reason: AmiConnectionError) -> None:
        """Fail every action still waiting with an :class:`AmiConnectionError` of ``reason``."""
        with self._lock:
            waiting = list(self._pending.values())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(AmiConnectionError(str(reason)))

    def route_response(self, response: Response) -> bool:
        """Hand ``response`` to its action; False if no action waits for a response with its ID.

        A successful ``EventList: start`` response keeps its action open for the item
        events; any other response answers the action at once.
        """
        with self._lock:
            pending = self._pending.get(response.action_id or "")
            if pending is None or pending.response is not None:
                return False
            if _is_list_start(response) and response.is_success:
                pending.response = response
                return True
        self._answer(pending, ActionResult(response))
        return True

    def route_event(self, event: Event) -> bool:
        """Add ``event`` to the list action it belongs to; False if it belongs to none."""
        # Checked on every event read: with no action waiting (the usual case), answer
        # without splitting the event's headers.
        if not self._pending:
            return False
        with self._lock:
            pending = self._pending.get(event.action_id or "")
            if pending is None or pending.response is None:
                return False
            if not _is_list_complete(event):
                pending.events.append(event)
                return True
        self._answer(pending, ActionResult(pending.response, pending.events, event))
        return True

    def _answer(self, pending: _PendingAction, result: ActionResult) -> None:
        if pending.answered or pending.future.done():
            return
        pending.answered = True
        if pending.on_answer is not None:
            self._flush()
            pending.on_answer(result)
        self._resolve(pending.future, result)
