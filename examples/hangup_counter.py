"""Count hangups per cause, and print the table every few seconds.

Each ``Hangup`` event carries ``Cause`` (the Q.850 cause code, an ``int`` once typed)
and ``Cause-txt`` (Asterisk's text for it, ``fields.Cause_txt`` in Python).  The script
binds ``*.call.hangup`` - every server's hangups - and keeps a counter per cause.

Run it next to a bridge (``ami-bridge demo`` starts one with simulated calls)::

    python examples/hangup_counter.py --amqp amqp://guest:guest@127.0.0.1:5672/ --every 5

Without ``--queue`` it reads from a throwaway queue: counts start when the script does.
With ``--queue hangup-counter`` it uses a durable quorum queue, which keeps the hangups
of the time the script was down.  Ctrl+C prints the final table and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections import Counter

from bridge.consumer import Consumer, EventMessage, Message
from bridge.events.generated import Hangup


class HangupCounter:
    """Hangups per (cause code, cause text)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, str]] = Counter()

    def observe(self, message: Message) -> bool:
        """Count ``message`` if it is a Hangup; True when it was counted."""
        if not isinstance(message, EventMessage) or not isinstance(message.fields, Hangup):
            return False
        self.counts[(message.fields.Cause, message.fields.Cause_txt or "")] += 1
        return True

    def table(self) -> str:
        """The counts, most frequent cause first, with a total."""
        lines = [f"{'Cause':>5}  {'Cause-txt':<32} {'Count':>7}"]
        for (cause, text), count in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{cause:>5}  {text:<32} {count:>7}")
        lines.append(f"{'':>5}  {'total':<32} {sum(self.counts.values()):>7}")
        return "\n".join(lines)


async def count_hangups(url: str, exchange: str, queue: str | None, every: float) -> None:
    """Consume hangups and print the table every ``every`` seconds, until cancelled."""
    counter = HangupCounter()

    async def handle(message: Message) -> None:
        counter.observe(message)

    async def print_every() -> None:
        while True:
            await asyncio.sleep(every)
            print(counter.table(), end="\n\n", flush=True)

    consumer = Consumer(url, exchange=exchange, patterns=["*.call.hangup"], queue=queue)
    try:
        async with consumer, asyncio.TaskGroup() as group:
            group.create_task(print_every())
            group.create_task(consumer.run(handle))
    finally:
        print(counter.table(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--amqp", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--exchange", default="ami.events")
    parser.add_argument("--queue", default=None, help="durable queue name (default: throwaway)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between tables")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(count_hangups(args.amqp, args.exchange, args.queue, args.every))


if __name__ == "__main__":
    main()
