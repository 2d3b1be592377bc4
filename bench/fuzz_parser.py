"""Bounded fuzzing of the AMI parser, on demand (never part of the test suite).

Three kinds of input, for ``--minutes`` in all:

* Hypothesis streams (``tests/ami/framing.py``): the items must match the slow
  reference reading of the documented framing, however the stream is cut, and when
  buffered bytes are dropped and fed again;
* mutated slices of every fixture (bytes inserted, deleted or replaced by CR, LF,
  blank lines, ``Response: Follows`` lines, ``--END COMMAND--`` markers, colons, odd
  bytes), with small random limits: no exception, the same items whole, byte by byte,
  in random reads and with refeeds; no message, Malformed or buffer over its bound;
  the reference agrees wherever the stream is complete;
* the same inputs repeated to 1 MB and fed in 256-byte reads: CPU time per MB, to catch
  any input that makes a search quadratic.

Run: ``python bench/fuzz_parser.py [--minutes 3] [--seed 1]``.  A failing input is
written to ``fuzz-failure-<n>.bin`` and the script exits 1.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the reference framing lives with the tests

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bridge.ami.protocol import AmiParser, CommandOutput, Item, Malformed, Message  # noqa: E402
from tests.ami.framing import (  # noqa: E402
    describe,
    parse_with_refeeds,
    reference_items,
    streams,
)

FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*/*.ami"))
TOKENS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\n\r\n",
    b"Response: Follows\r\n",
    b"\r\nResponse: Follows\r\nPrivilege: Command\r\n",
    b"--END COMMAND--",
    b"--END COMMAND--\r\n\r\n",
    b"--END COMMAND--   \n",
    b"Event: ",
    b":",
    b" ",
    b"\t",
    b"\xff",
    b"\x00",
]
Options = dict[str, int]


class Failure(Exception):
    def __init__(self, what: str, data: bytes, options: Options) -> None:
        super().__init__(what)
        self.data = data
        self.options = options


def parse(data: bytes, cuts: list[int], options: Options, check_bounds: bool = False) -> list[Item]:
    parser = AmiParser(**options)  # type: ignore[arg-type]
    items: list[Item] = []
    start = 0
    limit = options["max_message_size"]
    for cut in [*cuts, len(data)]:
        items += parser.feed(data[start:cut])
        if check_bounds and parser.buffered > 2 * limit + 160 + (cut - start):
            raise Failure(f"buffer of {parser.buffered} bytes after a read", data, options)
        start = cut
    return items + parser.feed_eof()


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(0, len(out))
        action = rng.random()
        if action < 0.5:
            out[pos:pos] = rng.choice(TOKENS)
        elif action < 0.75:
            del out[pos : pos + rng.randint(1, 8)]
        else:
            out[pos : pos + 1] = bytes([rng.randrange(256)])
    return bytes(out)


def check(data: bytes, options: Options, rng: random.Random) -> bool:
    """Raise Failure on a broken invariant; True when the reference could judge too."""
    whole = parse(data, [], options, check_bounds=True)
    expected = describe(whole)
    limit, max_headers = options["max_message_size"], options["max_headers"]
    for item in whole:
        if isinstance(item, Malformed) and len(item.data) > limit:
            raise Failure("a Malformed over the limit", data, options)
        if isinstance(item, Message) and not isinstance(item, CommandOutput):
            if len(item.raw) > limit:
                raise Failure(f"a message of {len(item.raw)} bytes passed", data, options)
            if len(item.headers) > max_headers:
                raise Failure("a message over max_headers passed", data, options)
    cutters: list[Callable[[], list[int]]] = [
        lambda: sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 30)))),
    ]
    if len(data) <= 600:
        cutters.append(lambda: list(range(1, len(data))))
    for cuts in cutters:
        if len(data) > 1 and describe(parse(data, cuts(), options, check_bounds=True)) != expected:
            raise Failure("items depend on how reads split", data, options)
    if describe(parse_with_refeeds(data, rng.randrange(1 << 30), **options)) != expected:
        raise Failure("items change when buffered bytes are fed again", data, options)
    try:
        reference = reference_items(
            data,
            banner=bool(options["expect_banner"]),
            max_message_size=limit,
            max_headers=max_headers,
        )
    except AssertionError:
        return False  # not a complete stream: the reference does not say
    if reference != expected:
        raise Failure("items differ from the reference framing", data, options)
    return True


def first_failure(group: ExceptionGroup[Exception]) -> Failure:
    for error in group.exceptions:
        if isinstance(error, Failure):
            return error
        if isinstance(error, ExceptionGroup):
            return first_failure(error)
    raise group


def cost_per_mb(data: bytes, options: Options) -> float:
    """CPU seconds per MB for ``data`` repeated to 1 MB, in 256-byte reads."""
    if not data:
        return 0.0
    big = data * max(1, (1 << 20) // len(data))
    parser = AmiParser(**options)  # type: ignore[arg-type]
    start = time.process_time()
    for pos in range(0, len(big), 256):
        parser.feed(big[pos : pos + 256])
    return (time.process_time() - start) / (len(big) / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    counts = {"hypothesis": 0, "mutated": 0, "complete": 0, "cost_checked": 0}
    worst = (0.0, b"")
    blobs = [path.read_bytes() for path in FIXTURES]

    @settings(
        max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        max_message_size=st.integers(16, 400),
        max_headers=st.integers(1, 20),
        banner=st.booleans(),
        data=st.data(),
    )
    def hypothesis_round(
        max_message_size: int, max_headers: int, banner: bool, data: st.DataObject
    ) -> None:
        stream = data.draw(streams(banner))
        options = {
            "max_message_size": max_message_size,
            "max_headers": max_headers,
            "expect_banner": int(banner),
        }
        counts["hypothesis"] += 1
        counts["complete"] += check(stream, options, rng)

    try:
        while time.monotonic() < deadline:
            hypothesis_round()
            for _ in range(2000):
                blob = rng.choice(blobs)
                start = rng.randrange(len(blob))
                piece = mutate(rng, blob[start : start + rng.choice([40, 200, 1500, 6000])])
                options = {
                    "max_message_size": rng.choice([16, 40, 100, 300, 5000]),
                    "max_headers": rng.choice([1, 3, 10, 10_000]),
                    "expect_banner": int(start == 0),
                }
                counts["mutated"] += 1
                counts["complete"] += check(piece, options, rng)
                if rng.random() < 0.01:
                    counts["cost_checked"] += 1
                    cost = cost_per_mb(piece, options)
                    if cost > worst[0]:
                        worst = (cost, piece)
            if time.monotonic() >= deadline:
                break
    except (Failure, ExceptionGroup) as error:
        # Hypothesis reports several distinct failures as a group: show the first.
        failure = error if isinstance(error, Failure) else first_failure(error)
        name = f"fuzz-failure-{counts['mutated'] + counts['hypothesis']}.bin"
        Path(name).write_bytes(failure.data)
        print(f"FAILED: {failure} with {failure.options}; input written to {name}")
        raise SystemExit(1) from None
    print(
        f"{counts['hypothesis']:,} Hypothesis streams and {counts['mutated']:,} mutated "
        f"slices checked in {args.minutes:g} min ({counts['complete']:,} complete streams "
        "also against the reference); no failure"
    )
    print(f"worst cost of {counts['cost_checked']} inputs repeated to 1 MB: {worst[0]:.3f} s/MB")
    print(json.dumps({**counts, "worst_cpu_s_per_mb": round(worst[0], 3)}))


if __name__ == "__main__":
    main()
