"""Typed consumption of the bridge's messages, for applications downstream of RabbitMQ.

:func:`parse_message` turns a published body into an :class:`EventMessage` (whose
``fields`` is the event's own model: ``fields.Cause`` is an ``int``), an
:class:`InvalidMessage` or a :class:`StatusMessage`.  :class:`Consumer` binds a queue to
routing patterns and hands over typed messages, with retries, dead-lettering and
duplicate detection; :class:`StreamReplay` reads the history kept in the bridge's
stream from a time or an offset, reporting each message's offset so a reader can resume;
:class:`SequenceTracker` does the duplicate and gap detection on its own.
:func:`format_line` renders a message as one readable line.

Modules: ``messages`` (the models), ``sequence`` (duplicates and gaps), ``attempts``
(retry counting), ``delivery`` (what happens to each message), ``topology`` (queues and
dead letters), ``consumer`` (the connection and the loop), ``replay`` (the stream),
``patterns`` (topic matching on the client), ``outcome`` (the event an action causes
later, by ActionID), ``oneline`` (one-line rendering), ``errors``.
"""

from bridge.consumer.consumer import Consumer, Handler
from bridge.consumer.delivery import ConsumerStats, Delivery
from bridge.consumer.errors import ConsumerError
from bridge.consumer.messages import (
    EventMessage,
    InvalidMessage,
    Message,
    MessageError,
    StatusMessage,
    parse_message,
)
from bridge.consumer.oneline import format_details, format_line
from bridge.consumer.outcome import ActionOutcome, OutcomeEvent
from bridge.consumer.patterns import TopicFilter, topic_matches
from bridge.consumer.replay import Replayed, StreamReplay, StreamStart
from bridge.consumer.sequence import BridgeGap, Duplicate, Report, SequenceGap, SequenceTracker
from bridge.consumer.topology import QueuePlan, dead_letter_name

__all__ = [
    "ActionOutcome",
    "BridgeGap",
    "Consumer",
    "ConsumerError",
    "ConsumerStats",
    "Delivery",
    "Duplicate",
    "EventMessage",
    "Handler",
    "InvalidMessage",
    "Message",
    "MessageError",
    "OutcomeEvent",
    "QueuePlan",
    "Replayed",
    "Report",
    "SequenceGap",
    "SequenceTracker",
    "StatusMessage",
    "StreamReplay",
    "StreamStart",
    "TopicFilter",
    "dead_letter_name",
    "format_details",
    "format_line",
    "parse_message",
    "topic_matches",
]
