"""Admitting an action request from the bus: which server, which action, allowed or not.

Approach
--------
Pure functions and values, no I/O: :func:`admit` takes what arrived (routing key and
body) and what this bridge serves, and returns either an :class:`Admitted` request ready
for the AMI session or the :class:`~bridge.events.rpc.ActionReply` that refuses it.
Checks run cheapest first: body size, routing key, JSON and the request model
(:class:`~bridge.events.rpc.ActionRequest`), then the action policy.

The routing key is ``{server}`` or ``{server}.{action}``; the server segment is the
server id in lower case, as in event routing keys.  The action may be named by the key,
by the body, or both, when they must agree (AMI action names are case-insensitive).

:class:`ActionPolicy` is the allow-list: ``rpc_allow`` (read-only actions by default)
plus ``rpc_enable`` (further actions, each named explicitly), compared without regard
to case.  Actions that act on the bridge's own AMI session (``Logoff``, ``Events``,
``Filter``...) are refused whatever the settings: they would log the bridge off or
silence its event stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from bridge.ami.protocol import Header
from bridge.events.rpc import (
    ActionReply,
    ActionRequest,
    ErrorCode,
    describe_validation_error,
)
from bridge.publish.routing import escape_segment

__all__ = [
    "MAX_BODY_BYTES",
    "SESSION_ACTIONS",
    "ActionPolicy",
    "Admitted",
    "admit",
    "server_keys",
]

#: Largest request body read; 64 headers of 1000 bytes fit with room to spare.
MAX_BODY_BYTES = 256 * 1024
#: Actions that change the bridge's own AMI session; never run from the bus (lower case).
SESSION_ACTIONS = frozenset({"login", "logoff", "challenge", "events", "filter", "waitevent"})


class ActionPolicy:
    """Which actions the bus may run: ``allow`` plus ``enable``, case-insensitive."""

    def __init__(self, allow: Iterable[str], enable: Iterable[str] = ()) -> None:
        # lower-cased name -> the configured spelling, which is what the PBX is sent.
        self._allowed: dict[str, str] = {}
        for name in [*allow, *enable]:
            self._allowed.setdefault(name.strip().lower(), name.strip())

    def __repr__(self) -> str:
        return f"ActionPolicy({sorted(self._allowed.values())!r})"

    def maybe_allowed(self, action: str) -> str | None:
        """The configured spelling of ``action`` if the bus may run it, else None."""
        lower = action.lower()
        if lower in SESSION_ACTIONS:
            return None
        return self._allowed.get(lower)

    def refusal(self, action: str) -> str:
        """Why ``action`` is refused, for the error reply."""
        if action.lower() in SESSION_ACTIONS:
            return f"{action} acts on the bridge's own AMI session and is never run from the bus"
        return (
            f"{action} is not allowed over the bus; the operator can allow it with the "
            "rpc_enable setting"
        )


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may go to the PBX."""

    server: str
    action: str
    headers: tuple[Header, ...]
    #: The client's own correlation value, to put into the ActionID.
    correlation: str | None = None


def server_keys(server_ids: Iterable[str]) -> dict[str, str]:
    """Routing-key segment -> server id, for :func:`admit`."""
    return {escape_segment(server_id): server_id for server_id in server_ids}


def _body_action(body: bytes) -> str | None:
    """The action as the body spells it, when the body is readable: every reply names
    the action as the client wrote it, not the lower-cased routing-key segment."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        return ActionRequest.model_validate_json(body).action
    except ValidationError:
        return None


def admit(
    routing_key: str, body: bytes, *, servers: Mapping[str, str], policy: ActionPolicy
) -> Admitted | ActionReply:
    """Decide on one request: :class:`Admitted`, or the error reply that refuses it.

    ``servers`` maps routing-key segments to server ids (see :func:`server_keys`).
    """
    segments = routing_key.split(".")
    if len(segments) > 2 or not all(segments):
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST,
            f"routing key {routing_key!r} is neither {{server}} nor {{server}}.{{action}}",
        )
    key_action = segments[1] if len(segments) == 2 else None
    server = servers.get(segments[0].lower())
    if server is None:
        return ActionReply.failure(
            ErrorCode.UNKNOWN_SERVER,
            f"no bridge on this exchange serves server {segments[0]!r}",
            server=segments[0],
            action=_body_action(body) or key_action,
        )
    if len(body) > MAX_BODY_BYTES:
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST,
            f"the request body is over {MAX_BODY_BYTES} bytes",
            server=server,
            action=key_action,
        )
    try:
        request = ActionRequest.model_validate_json(body)
    except ValidationError as exc:
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST,
            f"bad request: {describe_validation_error(exc)}",
            server=server,
            action=key_action,
        )
    requested = request.action or key_action
    if requested is None:
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST,
            "no action: name it in the body or in the routing key ({server}.{action})",
            server=server,
        )
    if key_action is not None and key_action.lower() != requested.lower():
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST,
            f"the routing key names action {key_action!r} but the body {requested!r}",
            server=server,
            action=requested,
        )
    action = policy.maybe_allowed(requested)
    if action is None:
        return ActionReply.failure(
            ErrorCode.NOT_ALLOWED, policy.refusal(requested), server=server, action=requested
        )
    return Admitted(server, action, tuple(request.header_pairs()), request.correlation)
