"""State resync after each login: list actions whose items are published as snapshots.

Approach
--------
Asterisk keeps nothing for a manager client across a reconnect, and the events of the
time away are gone, so after every login the bridge asks the PBX for its current state.
Once ``FullyBooted`` arrives (the PBX is ready to answer), the pipeline journals a
``resync`` status and starts :meth:`ResyncRunner.run` as a task of its own.  The runner
sends the actions of ``resync_actions`` one after another on the session and hands the
item events of each answer (not its response, not its ``...Complete`` event) to a
:class:`SnapshotSink`, which journals them flagged as snapshots.

Before the plan, the runner asks ``ListCommands`` once (per run, so once per
connection) and skips every action the PBX does not list: probing an action Asterisk
lacks makes it raise a ``RequestBadFormat`` security event, at every login.  Asterisk
lists only the actions the bridge's user may run, and running any other fails anyway.
When ``ListCommands`` itself fails (an error, no answer in time), every action is tried.

Each entry of the plan is ``A|B|C``: A is tried first; any failure (an error response,
such as ``Invalid/unknown command`` from a PBX without that module, or no answer in
time) moves on to B, and so on; the first that succeeds is used.  An entry none of
whose actions succeeds is skipped.  Nothing is retried: the next attempt is the next
login's resync.  A skipped entry is logged at WARNING and a fallback used at INFO, once;
later runs with the same outcome log at DEBUG only, so a PBX that lacks a module does
not fill the log on every reconnect.

Ordering
--------
Asterisk writes a list action's response, items and ``Complete`` event back to back,
never in the middle of other events, and events raised meanwhile after them.  The runner
hands the connection an answer hook, so the items are journalled by the reader itself
at their place in the stream: every event read before the answer is journalled before
them, every event read after it after them.  Nothing waits in memory, so the journal's
write-ahead promise holds during a resync too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.ami.actions import ActionResult, AnswerHook
from bridge.ami.errors import ActionTimeout, LocalProtocolError
from bridge.ami.protocol import Event

__all__ = [
    "Alternatives",
    "EntryOutcome",
    "ResyncRunner",
    "SendAction",
    "SnapshotSink",
    "is_fully_booted",
    "parse_resync_actions",
]

log = logging.getLogger(__name__)

#: One plan entry: the actions to try, in order.
Alternatives = tuple[str, ...]


class SendAction(Protocol):
    """Sends one action on the current connection (``AmiSession.send_action``)."""

    def __call__(self, action: str, *, on_answer: AnswerHook) -> Awaitable[ActionResult]: ...


_FULLY_BOOTED = b"event: fullybooted"


def is_fully_booted(event: Event) -> bool:
    """True for a ``FullyBooted`` event, judged from its first bytes without a header split."""
    head = event.raw[: len(_FULLY_BOOTED) + 1].lower()
    return head.startswith(_FULLY_BOOTED) and head[len(_FULLY_BOOTED) :] in (b"", b"\n", b"\r")


def parse_resync_actions(entries: Iterable[str]) -> tuple[Alternatives, ...]:
    """The plan from the ``resync_actions`` setting: each ``A|B|C`` entry split, blanks dropped."""
    plan = []
    for entry in entries:
        alternatives = tuple(name.strip() for name in entry.split("|") if name.strip())
        if alternatives:
            plan.append(alternatives)
    return tuple(plan)


class SnapshotSink(Protocol):
    """Where the runner's results go: the pipeline that journals them."""

    def journal_snapshot(self, events: list[Event]) -> None:
        """Journal ``events`` (one action's items, in wire order) as snapshot records.

        Called by the reader, at the answer's place in the stream.
        """


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What one plan entry gave."""

    #: The entry as configured (``PJSIPShowEndpoints|SIPpeers``).
    entry: str
    #: The action that answered, or ``None`` when every alternative failed.
    action: str | None
    #: How many snapshot items it journalled.
    items: int

    def as_fields(self) -> dict[str, str | int | None]:
        """The outcome as a status message field."""
        return {"entry": self.entry, "action": self.action, "items": self.items}


#: Headers of a ``ListCommands`` answer that are not action names.
_NOT_ACTIONS = frozenset({"response", "actionid", "message", "eventlist"})


def _ignore(result: ActionResult) -> None:
    """The answer hook of an action whose answer journals nothing."""


async def _offered_actions(send: SendAction) -> frozenset[str] | None:
    """The lower-case names of the actions the PBX lists, or None when it does not say.

    ``action_listcommands`` in manager.c answers one header per action,
    ``Name: synopsis (Priv: classes)``, after ``Response`` and ``ActionID``.

    Raises:
        AmiConnectionError: the connection closed meanwhile.
    """
    try:
        result = await send("ListCommands", on_answer=_ignore)
    except (ActionTimeout, LocalProtocolError) as exc:
        log.debug("ListCommands failed (%s): every resync action is tried", exc)
        return None
    if not result.ok:
        return None
    names = frozenset(name.lower() for name, _ in result.response.headers)
    return names - _NOT_ACTIONS


class ResyncRunner:
    """Runs one server's resync plan; one instance lives as long as its pipeline."""

    def __init__(self, server: str, plan: Sequence[Alternatives]) -> None:
        self.server = server
        self.plan = tuple(plan)
        # Entry -> the outcome last logged above DEBUG (the action used, None = skipped).
        self._reported: dict[str, str | None] = {}

    @property
    def entries(self) -> list[str]:
        """The plan as configured: one ``A|B|C`` string per entry."""
        return ["|".join(alternatives) for alternatives in self.plan]

    async def run(self, send: SendAction, sink: SnapshotSink) -> list[EntryOutcome]:
        """Run every entry in order; returns what each gave.

        Raises:
            AmiConnectionError: the connection closed meanwhile (the rest is not run).
        """
        if not self.plan:
            return []
        offered = await _offered_actions(send)
        return [
            await self._run_entry(alternatives, send, sink, offered) for alternatives in self.plan
        ]

    async def _run_entry(
        self,
        alternatives: Alternatives,
        send: SendAction,
        sink: SnapshotSink,
        offered: frozenset[str] | None,
    ) -> EntryOutcome:
        entry = "|".join(alternatives)
        failures: list[str] = []

        def journal(result: ActionResult) -> None:
            if result.ok:
                sink.journal_snapshot(result.events)

        for action in alternatives:
            if offered is not None and action.lower() not in offered:
                failures.append(f"{action}: not offered by the PBX")
                continue
            try:
                result = await send(action, on_answer=journal)
            except (ActionTimeout, LocalProtocolError) as exc:
                failures.append(f"{action}: {exc}")
                continue
            if result.ok:
                self._report(entry, action, failures)
                return EntryOutcome(entry, action, len(result.events))
            message = result.response.get("Message") or result.response.status
            failures.append(f"{action}: {message}")
        self._report(entry, None, failures)
        return EntryOutcome(entry, None, 0)

    def _report(self, entry: str, used: str | None, failures: list[str]) -> None:
        why = "; ".join(failures)
        silent = entry.partition("|")[0]  # the first alternative working needs no news
        if self._reported.get(entry, silent) == used:
            log.debug("%s: resync %s -> %s (%s)", self.server, entry, used, why or "ok")
            return
        self._reported[entry] = used
        if used is None:
            log.warning("%s: resync skips %s, no action succeeded: %s", self.server, entry, why)
        else:
            log.info("%s: resync uses %s for %s (%s)", self.server, used, entry, why or "ok")
