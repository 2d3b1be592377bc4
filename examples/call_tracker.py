"""Follow one call from its first Newchannel to its last Hangup, and print its timeline.

Every channel of a call shares the ``Linkedid`` of the call's first channel (the
caller's leg): the callee's leg, a transfer target, a local channel.  The script waits
for a ``Newchannel`` whose ``Uniqueid`` equals its ``Linkedid`` - a new call - (or takes
``--linkedid``), then collects every event carrying that ``Linkedid`` until the last of
its channels has hung up, and prints the timeline::

    python examples/call_tracker.py --amqp amqp://guest:guest@127.0.0.1:5672/

It binds ``<server>.call.*`` and ``<server>.dialplan.*`` (``--server``, every server by
default) and reads them with ``async for``, acking each delivery itself.  ``Linkedid``
exists since Asterisk 1.8; 1.4-era events lack it and are not followed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass, field
from datetime import datetime

from bridge.consumer import Consumer, EventMessage, Message, format_details


@dataclass(frozen=True)
class Step:
    """One event of the call."""

    received_at: datetime
    event: str
    details: str


@dataclass
class CallTracker:
    """The timeline of one call, chosen by ``linkedid`` or by the first new call seen."""

    linkedid: str | None = None
    steps: list[Step] = field(default_factory=list)
    #: Uniqueids of the call's channels that have not hung up yet.
    open_channels: set[str] = field(default_factory=set)
    #: Every channel (Uniqueid) the call had.
    channels: set[str] = field(default_factory=set)
    finished: bool = False

    def observe(self, message: Message) -> bool:
        """Take ``message`` into account; True once the call's last channel hung up."""
        if self.finished or not isinstance(message, EventMessage):
            return self.finished
        linkedid = getattr(message.fields, "Linkedid", None)
        uniqueid = getattr(message.fields, "Uniqueid", None)
        if not isinstance(linkedid, str) or not isinstance(uniqueid, str):
            return False
        if self.linkedid is None:
            if message.event != "Newchannel" or uniqueid != linkedid:
                return False
            self.linkedid = linkedid  # the first channel of a new call
        if linkedid != self.linkedid:
            return False
        moment = datetime.fromisoformat(message.received_at)
        self.steps.append(Step(moment, message.event, format_details(message)))
        if message.event == "Hangup":
            self.open_channels.discard(uniqueid)
            self.finished = not self.open_channels
        else:
            self.open_channels.add(uniqueid)
            self.channels.add(uniqueid)
        return self.finished

    def timeline(self) -> str:
        """The call's events with their offset from the first one."""
        if not self.steps:
            return "no call seen"
        start = self.steps[0].received_at
        lines = [f"call {self.linkedid}: {len(self.channels)} channels, {len(self.steps)} events"]
        for step in self.steps:
            offset = (step.received_at - start).total_seconds()
            lines.append(f"{offset:+9.3f}s  {step.event:<14} {step.details}")
        return "\n".join(lines)


async def track_call(url: str, exchange: str, server: str, linkedid: str | None) -> CallTracker:
    """Follow one call to its end and return its tracker."""
    tracker = CallTracker(linkedid)
    patterns = [f"{server}.call.*", f"{server}.dialplan.*"]
    async with Consumer(url, exchange=exchange, patterns=patterns) as consumer:
        async for delivery in consumer:
            done = tracker.observe(delivery.message)
            await delivery.ack()
            if done:
                break
    return tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--amqp", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--exchange", default="ami.events")
    parser.add_argument("--server", default="*", help="server id to follow (default: any)")
    parser.add_argument("--linkedid", default=None, help="the call to follow (default: next)")
    args = parser.parse_args()
    try:
        tracker = asyncio.run(track_call(args.amqp, args.exchange, args.server, args.linkedid))
    except KeyboardInterrupt:
        return
    print(tracker.timeline())


if __name__ == "__main__":
    main()
