"""AMI actions over the bus: the request a client publishes and the reply the bridge sends.

Approach
--------
A client publishes an :class:`ActionRequest` (JSON) to the action exchange with the
routing key ``{server}`` or ``{server}.{action}`` and the AMQP properties ``reply_to`` and
``correlation_id``.  The bridge runs the action on that server's AMI session and
publishes one :class:`ActionReply` to ``reply_to`` with the same ``correlation_id``.

AMI headers travel as a JSON object both ways: a key's value is a string, or a list of
strings when the key repeats (``Variable`` of Originate, ``Output`` of Command): the
shape of a generic event's ``fields``.  In a reply each key keeps its first spelling,
keys differing only in case are one key (AMI reads them so), and the bridge's own
``ActionID`` is left out of ``response``: the reply is matched by ``correlation_id``,
and carries the ActionID the bridge sent in ``action_id``.

A request may carry its own ``correlation`` value (letters, digits and ``._:@-``, 64 at
most).  The bridge sends it inside the ActionID, as ``amib-<n>/<correlation>``: the
number keeps two requests with the same value apart, and the bridge's own ActionIDs
never hold a ``/``.  Events the action causes later carry that ActionID on the event
exchange, as an async ``Originate``'s ``OriginateResponse`` does.

:class:`ActionRequest` checks everything a request must be to reach a PBX: string values,
at most :data:`MAX_HEADERS` header lines, keys and values within their byte limits
(Asterisk drops input lines over 1024 bytes), no ``Action``/``ActionID`` header (the
bridge sets those), and nothing the AMI encoder refuses (CR or LF, a colon in a key).
Which actions may run is the bridge's policy, not part of the contract.  Validation
errors name keys, never values: a value may hold a secret.

The JSON Schemas of both (:func:`rpc_request_schema`, :func:`rpc_reply_schema`) come
from these models with the contract's identity keys, like every published schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from bridge.ami.actions import ActionResult
from bridge.ami.errors import LocalProtocolError
from bridge.ami.protocol import CommandOutput, Header, Message, serialize
from bridge.events.envelope import SCHEMA_VERSION
from bridge.events.headers import add_value, replace_surrogates
from bridge.events.schema import (
    CONTRACT_MAJOR,
    JSON_SCHEMA_DIALECT,
    contract_comment,
    model_schema,
    schema_id,
)

__all__ = [
    "ACTION_PATTERN",
    "CORRELATION_PATTERN",
    "MAX_HEADERS",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "RESERVED_HEADERS",
    "ActionReply",
    "ActionRequest",
    "AmiHeaders",
    "ErrorCode",
    "RpcError",
    "describe_validation_error",
    "headers_object",
    "rpc_reply_schema",
    "rpc_request_schema",
]

#: Header lines one request may carry (a list value counts each of its items).
MAX_HEADERS = 64
#: Longest header value in UTF-8 bytes (Asterisk's own input line limit is 1024).
MAX_VALUE_BYTES = 1000
#: Longest header key in UTF-8 bytes.
MAX_KEY_BYTES = 64
#: Headers the bridge writes itself; a request may not set them (compared in lower case).
RESERVED_HEADERS = frozenset({"action", "actionid"})
#: An AMI action name: a letter, then letters, digits or ``_`` (64 at most).
ACTION_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
#: A client's correlation value: safe in an ActionID, and never holding its ``/``.
CORRELATION_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"

#: AMI headers as JSON: a string per key, a list of strings when the key repeats.
AmiHeaders = dict[str, str | list[str]]


def _one_error(kind: str, message: str) -> WrapValidator:
    """Report a failed value as one error instead of one per branch of its union."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(kind, message) from None

    return WrapValidator(validate)


_ActionName = Annotated[
    Annotated[StrictStr, Field(pattern=ACTION_PATTERN)] | SkipJsonSchema[None],
    _one_error("action_name", "must be an AMI action name: a letter, then letters, digits or _"),
]
_HeaderValue = Annotated[
    StrictStr | list[StrictStr],
    _one_error("header_value", "must be a string or a list of strings"),
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omitted(description: str) -> Any:
    """A field left out of the JSON when unset (never ``null``), and so in the schema."""
    return Field(None, description=description, json_schema_extra=_no_default)


class ErrorCode(StrEnum):
    """Why an action request failed; the message of the error says more."""

    #: Not JSON, not an object, a missing or badly named action, a bad header.
    MALFORMED_REQUEST = "malformed_request"
    #: No bridge on the exchange serves the server named by the routing key.
    UNKNOWN_SERVER = "unknown_server"
    #: The action is not allowed over the bus (see the ``rpc_allow``/``rpc_enable`` settings).
    NOT_ALLOWED = "not_allowed"
    #: The bridge is not logged in to that server's AMI right now.
    NOT_CONNECTED = "not_connected"
    #: The PBX did not answer (or did not finish a list) within the bridge's ``rpc_timeout``.
    TIMEOUT = "timeout"
    #: The PBX answered ``Response: Error``; ``message`` is its ``Message`` header.
    ACTION_FAILED = "action_failed"
    #: A fault in the bridge itself; the request may or may not have reached the PBX.
    INTERNAL_ERROR = "internal_error"


class RpcError(BaseModel):
    """What went wrong with one request."""

    model_config = ConfigDict(frozen=True, extra="allow")

    code: ErrorCode = Field(description="Stable error code.")
    message: str = Field(description="Readable explanation (never holds header values).")


class ActionRequest(BaseModel):
    """One AMI action to run on the server named by the routing key.

    ``action`` may be left out when the routing key names it (``pbx1.queuestatus``);
    when both name an action they must agree (case does not matter).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: _ActionName = _omitted(
        "The AMI action, e.g. QueueStatus; optional when the routing key names it."
    )
    headers: dict[str, _HeaderValue] = Field(
        default_factory=dict,
        description=f"AMI headers of the action: a string, or a list of strings to repeat "
        f"the key (in order). At most {MAX_HEADERS} lines, keys up to {MAX_KEY_BYTES} and "
        f"values up to {MAX_VALUE_BYTES} UTF-8 bytes, no CR or LF, no Action or ActionID.",
        json_schema_extra={"maxProperties": MAX_HEADERS},
    )

    correlation: Annotated[StrictStr, Field(pattern=CORRELATION_PATTERN)] | SkipJsonSchema[None] = (
        _omitted(
            "The client's own correlation value (letters, digits, ._:@-; 64 at most); the "
            "bridge sends it in the ActionID, amib-<n>/<correlation>, which the reply's "
            "action_id and any event the action causes (OriginateResponse) carry."
        )
    )

    @model_validator(mode="after")
    def _check_headers(self) -> ActionRequest:
        pairs = list(self.header_pairs())
        if len(pairs) > MAX_HEADERS:
            raise ValueError(f"{len(pairs)} header lines, at most {MAX_HEADERS} are allowed")
        for key, value in pairs:
            if key.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {key!r} is set by the bridge and may not be given")
            if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
                raise ValueError(f"header name {key[:16]!r}... is over {MAX_KEY_BYTES} bytes")
            if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
                raise ValueError(f"the value of header {key!r} is over {MAX_VALUE_BYTES} bytes")
        try:
            serialize(pairs)
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        return self

    def header_pairs(self) -> Iterable[Header]:
        """The headers as AMI lines, in order, a list value giving one line per item."""
        for key, value in self.headers.items():
            if isinstance(value, str):
                yield key, value
            else:
                for item in value:
                    yield key, item


class ActionReply(BaseModel):
    """The bridge's answer to one action request (``ok`` says which kind).

    Success (``ok: true``): ``response`` holds the PBX's response headers; a list action
    (QueueStatus, CoreShowChannels...) also has every item event in ``events``, in wire
    order, and its closing event (with ``ListItems``) in ``complete``.

    Failure (``ok: false``): ``error`` says why.  When the PBX answered
    ``Response: Error`` (code ``action_failed``) its response is in ``response`` too.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    schema_version: str = Field(description="Contract version, major.minor.patch.")
    ok: bool = Field(description="True when the PBX ran the action successfully.")
    server: str | SkipJsonSchema[None] = _omitted("The server id the request was routed to.")
    action: str | SkipJsonSchema[None] = _omitted("The action, as the bridge sent it.")
    action_id: str | SkipJsonSchema[None] = _omitted(
        "The ActionID the bridge sent (amib-<n>, or amib-<n>/<correlation>); events the "
        "action causes later, such as an async Originate's OriginateResponse, carry it."
    )
    response: AmiHeaders | SkipJsonSchema[None] = _omitted(
        "The PBX's response headers (without ActionID)."
    )
    events: list[AmiHeaders] | SkipJsonSchema[None] = _omitted(
        "The item events of a list action, in wire order; empty for other actions."
    )
    complete: AmiHeaders | SkipJsonSchema[None] = _omitted(
        "The event that closed a list action (EventList: Complete, ListItems)."
    )
    output: str | SkipJsonSchema[None] = _omitted(
        "The CLI text of a Command action on Asterisk before 14 (Response: Follows)."
    )
    error: RpcError | SkipJsonSchema[None] = _omitted("Why the request failed.")

    @classmethod
    def from_result(cls, server: str, action: str, result: ActionResult) -> ActionReply:
        """The reply carrying ``result``; ``Response: Error`` makes it an ``action_failed``."""
        response = result.response
        error = None
        if not result.ok:
            message = response.get("Message") or f"Response: {response.status}"
            error = RpcError(code=ErrorCode.ACTION_FAILED, message=message)
        return cls(
            schema_version=SCHEMA_VERSION,
            ok=error is None,
            server=server,
            action=action,
            action_id=response.action_id,
            response=headers_object(response),
            events=[headers_object(event) for event in result.events],
            complete=headers_object(result.complete) if result.complete is not None else None,
            output=response.output if isinstance(response, CommandOutput) else None,
            error=error,
        )

    @classmethod
    def failure(
        cls, code: ErrorCode, message: str, *, server: str | None = None, action: str | None = None
    ) -> ActionReply:
        """An error reply that carries no PBX response."""
        return cls(
            schema_version=SCHEMA_VERSION,
            ok=False,
            server=server,
            action=action,
            error=RpcError(code=code, message=message),
        )

    def to_json(self) -> bytes:
        """The reply body: JSON without the keys that are unset."""
        return self.model_dump_json(exclude_none=True).encode()


def headers_object(message: Message) -> AmiHeaders:
    """``message``'s headers as a JSON object, without ``ActionID``.

    A repeated key becomes a list under its first spelling; bytes that were not UTF-8
    become U+FFFD.
    """
    folded: AmiHeaders = {}
    spellings: dict[str, str] = {}
    fix = replace_surrogates if message.invalid_utf8 else None
    for key, value in message.headers:
        lower = key.lower()
        if lower == "actionid":
            continue
        if fix is not None:
            key, value = fix(key), fix(value)
        add_value(folded, spellings.setdefault(lower, key), value)
    return folded


def describe_validation_error(error: ValidationError) -> str:
    """One line naming where each problem is and what it is, never the input values."""
    parts = []
    for detail in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _rpc_schema(model: type[BaseModel], name: str, title: str, text: str) -> dict[str, Any]:
    schema = model_schema(model)
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = schema_id(f"rpc:{name}")
    schema["title"] = title
    schema["description"] = text
    schema["$comment"] = contract_comment()
    return schema


def rpc_request_schema() -> dict[str, Any]:
    """The JSON Schema of an action request body."""
    return _rpc_schema(
        ActionRequest,
        "request",
        "AMI action request",
        "One AMI action for the bridge to run on the server named by the routing key "
        "({server} or {server}.{action}); the reply goes to the AMQP reply_to with the "
        "same correlation_id.",
    )


def rpc_reply_schema() -> dict[str, Any]:
    """The JSON Schema of the bridge's reply to an action request."""
    schema = _rpc_schema(
        ActionReply,
        "reply",
        "AMI action reply",
        "The bridge's reply to one action request: ok with the PBX's response (and a "
        "list action's events), or ok=false with an error code and message. Consumers "
        "must ignore keys they do not know.",
    )
    schema["properties"]["schema_version"]["pattern"] = rf"^{CONTRACT_MAJOR}\.\d+\.\d+$"
    return schema
