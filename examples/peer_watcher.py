"""Watch SIP peers register, unregister and change reachability.

``PeerStatus`` events say what happened to a peer (``Peer`` is ``TECH/name``, such as
``PJSIP/101``), in ``PeerStatus``:

* ``Registered`` / ``Unregistered``: the phone registered (from ``Address``) or left;
* ``Reachable`` / ``Unreachable``: the result of the last qualify (OPTIONS ping), with
  ``Time`` the round trip in milliseconds; ``Time`` ``-1`` means unreachable (older
  chan_sip sends it with ``Unreachable``, and sometimes along with other statuses).

The script binds ``*.system.peerstatus``, prints one line per change and keeps each
peer's state.  Run it next to a bridge (``ami-bridge demo`` simulates phones)::

    python examples/peer_watcher.py --amqp amqp://guest:guest@127.0.0.1:5672/

Ctrl+C prints the state of every peer seen and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from dataclasses import dataclass

from bridge.consumer import Consumer, EventMessage, Message
from bridge.events.generated import PeerStatus

#: ``Time`` value that means "did not answer the qualify".
UNREACHABLE_TIME = -1


@dataclass
class PeerState:
    """What is known of one peer; None where no event has said yet."""

    registered: bool | None = None
    address: str | None = None
    reachable: bool | None = None
    latency_ms: int | None = None

    def describe(self) -> str:
        parts = []
        if self.registered is not None:
            where = f" from {self.address}" if self.registered and self.address else ""
            parts.append(("registered" if self.registered else "unregistered") + where)
        if self.reachable is not None:
            latency = f", {self.latency_ms} ms" if self.latency_ms is not None else ""
            parts.append(("reachable" + latency) if self.reachable else "UNREACHABLE")
        return "; ".join(parts) or "unknown"


class PeerWatcher:
    """The state of every peer, keyed by (server, peer)."""

    def __init__(self) -> None:
        self.peers: dict[tuple[str, str], PeerState] = {}

    def observe(self, message: Message) -> str | None:
        """Apply a PeerStatus event; returns a line describing the change, else None."""
        if not isinstance(message, EventMessage) or not isinstance(message.fields, PeerStatus):
            return None
        fields = message.fields
        if fields.Peer is None:
            return None
        state = self.peers.setdefault((message.server, fields.Peer), PeerState())
        status = fields.PeerStatus or ""
        if status == "Registered":
            state.registered, state.address = True, fields.Address or state.address
        elif status == "Unregistered":
            state.registered = False
        elif status in ("Reachable", "Lagged"):
            state.reachable = True
        elif status == "Unreachable":
            state.reachable = False
        if fields.Time is not None:
            if fields.Time == UNREACHABLE_TIME:
                state.reachable, state.latency_ms = False, None
            else:
                state.latency_ms = fields.Time
        if state.reachable is False:
            state.latency_ms = None
        return f"{message.server} {fields.Peer}: {status} -> {state.describe()}"

    def summary(self) -> str:
        """One line per peer, sorted by server and peer."""
        return "\n".join(
            f"{server} {peer}: {state.describe()}"
            for (server, peer), state in sorted(self.peers.items())
        )


async def watch_peers(url: str, exchange: str) -> None:
    """Print each peer change until cancelled, then every peer's state."""
    watcher = PeerWatcher()

    async def handle(message: Message) -> None:
        line = watcher.observe(message)
        if line is not None:
            print(line, flush=True)

    try:
        async with Consumer(url, exchange=exchange, patterns=["*.system.peerstatus"]) as consumer:
            await consumer.run(handle)
    finally:
        print(watcher.summary(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--amqp", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--exchange", default="ami.events")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch_peers(args.amqp, args.exchange))


if __name__ == "__main__":
    main()
