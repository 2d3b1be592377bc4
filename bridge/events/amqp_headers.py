"""The AMQP headers of every published message, defined once for the bridge and the docs.

Approach
--------
Consumers of a headers exchange match on these headers, and the AsyncAPI document
describes them.  :class:`AmqpHeaders` is the one definition: :func:`amqp_headers` builds
the headers the bridge sends from it, and :func:`amqp_headers_schema` gives its JSON
Schema to the AsyncAPI document, so a new header is added here and nowhere else.  Every
header repeats a key of the body (``snapshot`` only when true), so the two never
disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.events.cloudevents import with_cloudevents_headers
from bridge.events.envelope import SCHEMA_VERSION
from bridge.events.schema import absent_not_null, model_schema

__all__ = ["AmqpHeaders", "amqp_headers", "amqp_headers_schema"]


class AmqpHeaders(BaseModel):
    """AMQP message headers, for consumers of a headers exchange: each repeats the
    body's key of the same name."""

    model_config = ConfigDict(frozen=True)

    event: str = Field(description="The body's `event`: the event name as sent, or the status.")
    server: str = Field(description="Configured name of the AMI server.")
    privilege: list[str] = Field(
        description="The body's `privilege`: the Privilege header lower-cased and split; "
        "`[]` for status messages and for events sent without one."
    )
    epoch: int = Field(description="Connection epoch.")
    seq: int = Field(description="Sequence number within the epoch.")
    schema_version: str = Field(description="Contract version, major.minor.patch.")
    snapshot: bool | None = Field(
        None, description="Present, and true, only on messages produced by a state resync."
    )
    event_id: str | None = Field(
        None,
        description="The body's `event_id`: the event's identity across every bridge "
        "reading the PBX. Since 2.3.0.",
    )


def amqp_headers(
    *,
    event: str,
    server: str,
    privilege: list[str],
    epoch: int,
    seq: int,
    snapshot: bool,
    event_id: str | None = None,
) -> dict[str, str | int | list[str]]:
    """The headers of one message (a plain dict: this runs once per published message)."""
    headers: dict[str, str | int | list[str]] = {
        "event": event,
        "server": server,
        "privilege": privilege,
        "epoch": epoch,
        "seq": seq,
        "schema_version": SCHEMA_VERSION,
    }
    if snapshot:
        # An AMQP boolean, so a headers exchange can bind on x-match snapshot=true.
        headers["snapshot"] = True
    if event_id is not None:
        headers["event_id"] = event_id
    return headers


def amqp_headers_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`AmqpHeaders` and the CloudEvents headers beside them,
    as the AsyncAPI document embeds it."""
    schema = model_schema(AmqpHeaders)
    schema.pop("title", None)
    absent_not_null(schema)
    return with_cloudevents_headers(schema)
