"""The AsyncAPI 3.0 document of what the bridge publishes, generated.

Approach
--------
The document describes the broker side of the contract: the AMQP server, the topic
exchange as three channels (events, invalid records, status messages: one routing key
layout each), the alternate exchange's queue, one ``send`` operation per published
channel, and one message per event, plus the generic, invalid and status messages.
Payloads are not repeated here: each message points at its JSON Schema file next to
this document (``events/Newchannel.json``), declared with a ``schemaFormat`` for JSON
Schema 2020-12, the dialect those files use.  What every message shares (content type,
AMQP headers, the AMQP properties the bridge sets) is one message trait.

AMI actions over the bus are a second exchange: the ``actions`` channel takes requests
(the bridge's ``receive`` operation), and each reply goes to the address in the
request's ``reply_to`` property (the operation's ``reply``, on the ``actionReplies``
channel, whose address is set at run time).  Their messages carry no envelope and use
the AMQP ``correlation_id`` instead.

The caller passes the messages in (:class:`MessageEntry`); this module knows AsyncAPI,
not the event models.  Output is deterministic YAML in document order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from bridge.events.cloudevents import with_cloudevents_headers

__all__ = [
    "ASYNCAPI_FILE",
    "DEFAULT_EXCHANGE",
    "DEFAULT_RPC_EXCHANGE",
    "PAYLOAD_SCHEMA_FORMAT",
    "MessageEntry",
    "asyncapi_document",
    "render_asyncapi",
]

ASYNCAPI_FILE = "asyncapi.yaml"
#: The default exchange name (the ``exchange`` setting can change it).
DEFAULT_EXCHANGE = "ami.events"
#: The default request exchange of AMI actions (the ``rpc_exchange`` setting can change it).
DEFAULT_RPC_EXCHANGE = "ami.actions"
#: How a payload's JSON Schema file is declared: AsyncAPI names no 2020-12 format.
PAYLOAD_SCHEMA_FORMAT = "application/schema+json;version=2020-12"
_AMQP_BINDING_VERSION = "0.3.0"

Channel = Literal["events", "invalid", "status", "actions", "actionReplies"]


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """One message of the document.

    ``key`` names it under ``components/messages`` (letters, digits, ``.-_``), ``name``
    is the event, status or action message it carries, ``payload`` the path of its JSON
    Schema relative to the document, ``channel`` where it is published.  ``fixed_type`` says whether
    every such message has ``name`` as its AMQP ``type``; the generic and invalid
    messages carry the name of whatever event they hold.
    """

    key: str
    name: str
    summary: str
    payload: str
    channel: Channel
    fixed_type: bool = True


def _ref(*path: str) -> dict[str, str]:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in path)
    return {"$ref": "#/" + "/".join(escaped)}


def _exchange_binding(exchange: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": exchange,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": "/",
            },
            "x-alternate-exchange": f"{exchange}.unrouted",
            "bindingVersion": _AMQP_BINDING_VERSION,
        }
    }


_SERVER = {
    "description": "Configured name of the AMI server (letters, digits, `-`, `_`), lower-cased.",
    "location": "$message.payload#/server",
}
_EVENT = {
    "description": "The event name as sent, lower-cased, each segment percent-encoded "
    "for `%`, `.`, `*`, `#` and whitespace.",
    "location": "$message.payload#/event",
}
_CHANNELS: dict[Channel, dict[str, Any]] = {
    "events": {
        "address": "{server}.{class}.{event}",
        "title": "AMI events",
        "description": "Events that fit their model, or the generic model when they have "
        "none. The routing key template is a setting (`routing_key`); this is the default. "
        "`class` is the event's first privilege class other than `all`, or `none` when it "
        "has no other.",
        "parameters": {
            "server": _SERVER,
            "class": {
                "description": "First privilege class other than `all`, lower-cased; "
                "`none` when there is no other.",
                "examples": ["call", "system", "agent", "dialplan", "none"],
            },
            "event": _EVENT,
        },
    },
    "invalid": {
        "address": "{server}.invalid.{event}",
        "title": "Invalid records",
        "description": "Messages that broke their model or that the parser could not read "
        "whole; `malformed` stands for the event name when there was none.",
        "parameters": {"server": _SERVER, "event": _EVENT},
    },
    "status": {
        "address": "{server}.bridge.{status}",
        "title": "Bridge status",
        "description": "The bridge's own news about its AMI connection.",
        "parameters": {
            "server": _SERVER,
            "status": {
                "description": "The status.",
                "location": "$message.payload#/event",
            },
        },
    },
}
_OPERATION_TEXT: dict[Channel, tuple[str, str]] = {
    "events": ("publishEvents", "Publish each AMI event read from a server."),
    "invalid": ("publishInvalid", "Publish each message that could not be validated."),
    "status": ("publishStatus", "Publish a status change of an AMI connection."),
}
_COMMON_TRAIT = {
    "contentType": "application/json",
    "headers": _ref("components", "schemas", "AmqpHeaders"),
    "description": "Published persistent (delivery mode 2) and mandatory with publisher "
    "confirms. AMQP properties: `content_type` application/json, `message_id` the body's "
    "`id`, `type` the event or status name, `app_id` ami-bridge, `timestamp` the receive "
    "time in seconds. Delivery is at least once: consumers deduplicate on the message id.",
    "x-amqp-properties": {
        "content_type": "application/json",
        "message_id": "$message.payload#/id",
        "type": "$message.payload#/event",
        "app_id": "ami-bridge",
        "delivery_mode": 2,
    },
}
_AMQP_HEADERS = {
    "type": "object",
    "description": "AMQP message headers, for consumers of a headers exchange.",
    "required": ["event", "server", "privilege", "epoch", "seq", "schema_version"],
    "properties": {
        "event": {"type": "string", "description": "The event or status name."},
        "server": {"type": "string", "description": "Configured name of the AMI server."},
        "privilege": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Privilege classes; `[bridge]` for status messages.",
        },
        "epoch": {"type": "integer", "description": "Connection epoch."},
        "seq": {"type": "integer", "description": "Sequence number within the epoch."},
        "schema_version": {"type": "string", "description": "Contract version."},
    },
}


_RPC_PARAMETERS = {
    "server": {
        "description": "Server id of the PBX to run the action on, lower-cased. The key "
        "may be this segment alone when the body names the action.",
    },
    "action": {
        "description": "The AMI action, lower-cased; it must agree with the body's "
        "`action` when both name one.",
        "examples": ["ping", "queuestatus", "coreshowchannels"],
    },
}
_RPC_MESSAGE_TEXT: dict[Channel, str] = {
    "actions": "Published by a client, not persistent, with the AMQP properties "
    "`reply_to` (where the reply goes) and `correlation_id` (copied to the reply); "
    "`expiration` should be the client's timeout. A request without `reply_to` is "
    "dropped without running.",
    "actionReplies": "Published by the bridge to the default exchange with the request's "
    "`reply_to` as the routing key; AMQP properties: `correlation_id` the request's, "
    "`content_type` application/json, `type` ActionReply, `app_id` ami-bridge.",
}


def _rpc_channels(
    messages: Sequence[MessageEntry], rpc_exchange: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The channels and the operation of AMI actions over the bus."""
    requests = [m for m in messages if m.channel == "actions"]
    replies = [m for m in messages if m.channel == "actionReplies"]
    unrouted = f"{rpc_exchange}.unrouted"
    channels = {
        "actions": {
            "address": "{server}.{action}",
            "title": "AMI action requests",
            "description": "Requests to run one AMI action on a PBX. Each bridge consumes "
            "them from an exclusive queue bound with `{server}` and `{server}.*` for its "
            "servers, with a message TTL of its action timeout. Only allowed actions run "
            "(read-only ones unless the operator enables more). A request no binding "
            f"matches goes to the alternate exchange `{unrouted}` and its shared queue, "
            "where a bridge refuses it with `unknown_server`.",
            "parameters": copy.deepcopy(_RPC_PARAMETERS),
            "servers": [_ref("servers", "broker")],
            "messages": {m.key: _ref("components", "messages", m.key) for m in requests},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": rpc_exchange,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "x-alternate-exchange": unrouted,
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        },
        "actionReplies": {
            "address": None,
            "title": "AMI action replies",
            "description": "One reply per request, sent to the queue the request's "
            "`reply_to` names (through the default exchange).",
            "servers": [_ref("servers", "broker")],
            "messages": {m.key: _ref("components", "messages", m.key) for m in replies},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"type": "default", "vhost": "/"},
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        },
    }
    operations = {
        "runActions": {
            "action": "receive",
            "channel": _ref("channels", "actions"),
            "summary": "Run each AMI action request on its server and reply to it.",
            "description": "Every request gets exactly one reply, an error reply when it is "
            "malformed, not allowed, for an unknown server, or fails on the PBX. The "
            "request is acked after its reply is published.",
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING_VERSION}},
            "reply": {
                "address": {
                    "description": "The request's AMQP `reply_to` property.",
                    "location": "$message.header#/reply_to",
                },
                "channel": _ref("channels", "actionReplies"),
                "messages": [_ref("channels", "actionReplies", "messages", m.key) for m in replies],
            },
        }
    }
    return channels, operations


def _rpc_message(entry: MessageEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "title": entry.name,
        "summary": entry.summary,
        "description": _RPC_MESSAGE_TEXT[entry.channel],
        "contentType": "application/json",
        "correlationId": {
            "description": "The AMQP `correlation_id` property.",
            "location": "$message.header#/correlation_id",
        },
        "payload": {"schemaFormat": PAYLOAD_SCHEMA_FORMAT, "schema": {"$ref": entry.payload}},
        "bindings": {"amqp": {"deliveryMode": 1, "bindingVersion": _AMQP_BINDING_VERSION}},
    }


def _message(entry: MessageEntry) -> dict[str, Any]:
    amqp: dict[str, str] = {"messageType": entry.name} if entry.fixed_type else {}
    return {
        "name": entry.name,
        "title": entry.name,
        "summary": entry.summary,
        "payload": {"schemaFormat": PAYLOAD_SCHEMA_FORMAT, "schema": {"$ref": entry.payload}},
        "traits": [_ref("components", "messageTraits", "AmiBridgeMessage")],
        "bindings": {"amqp": {**amqp, "bindingVersion": _AMQP_BINDING_VERSION}},
    }


def asyncapi_document(
    messages: Sequence[MessageEntry],
    *,
    version: str,
    exchange: str = DEFAULT_EXCHANGE,
    rpc_exchange: str = DEFAULT_RPC_EXCHANGE,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for ``messages``, ``version`` being the contract's."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, channel in copy.deepcopy(_CHANNELS).items():
        published = [m for m in messages if m.channel == name]
        if name == "status":
            channel["parameters"]["status"]["enum"] = [m.name for m in published]
        channels[name] = {
            **channel,
            "servers": [_ref("servers", "broker")],
            "messages": {m.key: _ref("components", "messages", m.key) for m in published},
            "bindings": _exchange_binding(exchange),
        }
        operation_id, summary = _OPERATION_TEXT[name]
        operations[operation_id] = {
            "action": "send",
            "channel": _ref("channels", name),
            "summary": summary,
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        }
    channels["unrouted"] = {
        "address": f"{exchange}.unrouted",
        "title": "Unrouted messages",
        "description": f"The durable fanout exchange `{exchange}.unrouted` is the event "
        "exchange's alternate exchange; it is bound to the durable queue of the same name, "
        "which keeps every message no binding matched.",
        "servers": [_ref("servers", "broker")],
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": f"{exchange}.unrouted",
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": _AMQP_BINDING_VERSION,
            }
        },
    }
    rpc_channels, rpc_operations = _rpc_channels(messages, rpc_exchange)
    channels.update(rpc_channels)
    operations.update(rpc_operations)
    rpc_kinds = ("actions", "actionReplies")
    return {
        "asyncapi": "3.0.0",
        "id": "urn:ami-bridge",
        "info": {
            "title": "ami-bridge",
            "version": version,
            "description": "Asterisk Manager Interface (AMI) events published to RabbitMQ "
            "as typed JSON, one message per event, and AMI actions run on request through "
            f"the `{rpc_exchange}` exchange. Each message's JSON Schema is the file "
            "its payload refers to. Consumers must ignore keys they do not know.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ broker the bridge publishes to.",
                "variables": {
                    "host": {"default": "localhost"},
                    "port": {"default": "5672"},
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                m.key: _rpc_message(m) if m.channel in rpc_kinds else _message(m) for m in messages
            },
            "messageTraits": {"AmiBridgeMessage": copy.deepcopy(_COMMON_TRAIT)},
            "schemas": {"AmqpHeaders": with_cloudevents_headers(copy.deepcopy(_AMQP_HEADERS))},
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated object out again instead of as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_asyncapi(document: dict[str, Any]) -> str:
    """The document as YAML, keys in document order."""
    return yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100)
