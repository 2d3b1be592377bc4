"""Which model describes which event: one mapping for every Asterisk generation.

Approach
--------
:data:`REGISTRY` maps the lower-cased event name to its model class.  Lower case because
the wire and the docs disagree on case (``Newexten`` on the wire, ``NewExten`` in the
docs; ``Newcallerid`` in 1.4, ``NewCallerid`` later) and Asterisk itself compares names
without regard to case.  It is built from the generated models, then the hand-written
models of :mod:`bridge.events.legacy` replace those of the same name, so one name has one
model carrying the fields of all generations.  There is no branching on names anywhere
else: a lookup here decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bridge.events import generated, legacy
from bridge.events.base import AmiEvent

__all__ = ["REGISTRY", "EventModelInfo", "list_models", "model_for"]


def _build() -> dict[str, type[AmiEvent]]:
    registry: dict[str, type[AmiEvent]] = {}
    for model in (*generated.MODELS, *legacy.MODELS):
        registry[model.event_name.lower()] = model
    return registry


#: Lower-cased event name -> model class, covering current and 1.4-era events.
REGISTRY: Mapping[str, type[AmiEvent]] = MappingProxyType(_build())


@dataclass(frozen=True, slots=True)
class EventModelInfo:
    """One registered event: its documented name, privilege class and model."""

    event: str
    privilege_class: str | None
    model: type[AmiEvent]


def model_for(event_name: str) -> type[AmiEvent] | None:
    """The model of ``event_name`` (any case), or None when the event has none."""
    return REGISTRY.get(event_name.lower())


def list_models() -> list[EventModelInfo]:
    """Every registered event model, sorted by event name (for schema generation)."""
    return sorted(
        (EventModelInfo(m.event_name, m.privilege_class, m) for m in REGISTRY.values()),
        key=lambda info: info.event.lower(),
    )
