"""A hot-standby pair: its throughput against a single bridge, and its takeovers.

Approach
--------
Bridges run as ``ami-bridge run`` processes (``--ha`` for the pair) against one in-process
AMI simulator and the broker at ``--url``, with a consumer bound to ``#``
(:mod:`tests.ha.pair`).  In the same run:

* **throughput**: ``--events`` numbered events injected at once; events/s from the first
  injection until every one arrived, for a single bridge and for a pair;
* **takeover**, ``--trials`` times each at ``--rate`` events/s: SIGKILL of the active, and
  SIGSTOP of the active until the standby has taken over (then SIGCONT): the seconds
  from the signal to the first message of the new active, and the duplicates.

The last line printed is one JSON object.

    python bench/ha.py [--url amqp://guest:guest@127.0.0.1:5672/] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ha.pair import (
    Pair,
    Traffic,
    actives,
    first_new_epoch_at,
    numbered,
    running_pair,
)
from tests.support import AmqpNames, delete_names


async def _all_arrived(pair: Pair, sent: int, within: float) -> None:
    await pair.consumer.wait_until(
        lambda _: pair.consumer.received_all(sent), within, "every event"
    )


async def throughput(url: str, events: int, *, ha: bool) -> float:
    names = AmqpNames(f"bench.ha.{uuid.uuid4().hex[:10]}")
    with tempfile.TemporaryDirectory() as tmp:
        members = ("a", "b") if ha else ("a",)
        try:
            async with running_pair(
                url, names.exchange, names.queue, Path(tmp), ha=ha, names=members
            ) as pair:
                await pair.simulator.wait_for_sessions(len(members), 60)
                if ha:
                    await pair.consumer.wait_until(lambda b: bool(actives(b)), 30, "lock")
                begun = time.monotonic()
                for n in range(events):
                    pair.simulator.inject(numbered(n))
                    if n % 500 == 499:
                        await asyncio.sleep(0)  # let the simulator write
                await _all_arrived(pair, events, 300)
                return events / (time.monotonic() - begun)
        finally:
            await delete_names(url, names)


async def takeover(url: str, rate: float, sig: signal.Signals) -> dict[str, float]:
    names = AmqpNames(f"bench.ha.{uuid.uuid4().hex[:10]}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            async with running_pair(url, names.exchange, names.queue, Path(tmp)) as pair:
                await pair.simulator.wait_for_sessions(2, 60)
                await pair.consumer.wait_until(lambda b: bool(actives(b)), 30, "lock")
                traffic = Traffic(pair.simulator, rate)
                traffic.start()
                await asyncio.sleep(3)
                # The member that announced itself last is the active now (the lock may
                # have changed hands since the first announcement).
                announced = actives(pair.consumer.bodies)
                active = announced[-1]
                member = pair.members[active["fields"]["instance"]]
                member.send_signal(sig)
                at = time.monotonic()
                await pair.consumer.wait_until(
                    lambda b: len(actives(b)) > len(announced), 60, "takeover"
                )
                if sig is signal.SIGSTOP:
                    await asyncio.sleep(1)
                    member.send_signal(signal.SIGCONT)
                await asyncio.sleep(2)
                await traffic.stop()
                await _all_arrived(pair, traffic.sent, 120)
                took = first_new_epoch_at(pair, at) - at
                duplicates = pair.consumer.duplicates
                return {"takeover_s": round(took, 2), "duplicates": duplicates}
        finally:
            await delete_names(url, names)


async def main(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {}
    if args.events:
        single = await throughput(args.url, args.events, ha=False)
        paired = await throughput(args.url, args.events, ha=True)
        print(f"single {single:.0f} events/s, pair {paired:.0f} events/s", flush=True)
        result["single_events_per_s"] = round(single)
        result["pair_events_per_s"] = round(paired)
        result["pair_ratio"] = round(paired / single, 3)
    kills = {"sigkill": signal.SIGKILL, "sigstop": signal.SIGSTOP}
    for name, sig in kills.items():
        if args.only and name != args.only:
            continue
        runs = []
        for _ in range(args.trials):
            runs.append(await takeover(args.url, args.rate, sig))
            print(name, runs[-1], flush=True)
        result[name] = runs
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--only", choices=["sigkill", "sigstop"], default=None)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
