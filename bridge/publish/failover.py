"""Which broker node to try next, and when: the one reconnect policy of every connection.

Approach
--------
aio-pika connects to one URL and has no notion of a cluster, so the bridge keeps the
list of nodes itself (``amqp`` repeated).  :class:`FailoverPolicy` is the sans-I/O part:
it hands out the next URL and how long to wait before trying it.

* On a failed attempt it moves to the next node at once; only when a whole round of
  nodes has failed does it wait, with capped exponential backoff and full jitter
  (:class:`~bridge.ami.backoff.Backoff`).
* A connection that is lost goes the same way: the next node at once, the lost one last.
* A connection only resets the backoff once it has proved healthy (a confirm, or the
  consumers in place): a broker that accepts the connection and then refuses to
  publish must not become a tight reconnect loop.

:func:`reconnect` is the loop around it that both the publisher and the actions consumer
run.  While it waits between rounds it probes the nodes that were unreachable, every
half second, with the AMQP protocol header: a node that answers with ``Connection.Start``
ends the wait at once, so publishing resumes within a second or two of any node coming
back, however long the backoff had grown.  Nodes that refused the bridge (credentials,
virtual host, permissions) are not probed: they answer, and would end every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yarl

from bridge.ami.backoff import Backoff
from bridge.publish.broker import BrokerError, BrokerRefused, mask_url

__all__ = [
    "LOUD_FAILURES",
    "PROBE_INTERVAL",
    "REMINDER_INTERVAL",
    "BrokerEndpoints",
    "FailoverPolicy",
    "probe",
    "reconnect",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Failed attempts of one outage logged each as a WARNING; later ones are DEBUG lines.
LOUD_FAILURES = 5
#: Seconds between the WARNINGs that say an outage goes on, after the first attempts.
REMINDER_INTERVAL = 60.0
#: Seconds between probes of unreachable nodes while waiting out a backoff.
PROBE_INTERVAL = 0.5
_PROBE_TIMEOUT = 1.0
_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: The first bytes of Connection.Start: a method frame on channel 0.
_START_PREFIX = b"\x01\x00\x00"


@dataclass(frozen=True, slots=True)
class BrokerEndpoints:
    """The broker nodes and how to move between them; shared by every connection.

    ``urls`` carry the password; only :func:`~bridge.publish.broker.mask_url` forms are
    logged.
    """

    urls: tuple[str, ...]
    shuffle: bool = False
    backoff_base: float = 0.5
    backoff_cap: float = 5.0

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("at least one broker URL is needed")

    def policy(self, rng: random.Random | None = None) -> FailoverPolicy:
        """A fresh policy over these nodes (each connection keeps its own position)."""
        return FailoverPolicy(
            self.urls,
            shuffle=self.shuffle,
            backoff=Backoff(base=self.backoff_base, cap=self.backoff_cap),
            rng=rng,
        )


class FailoverPolicy:
    """Hands out the next node to try and the pause before it.  No I/O.

    Call :meth:`next_attempt` before each attempt, then :meth:`failed` or
    :meth:`connected`; :meth:`healthy` once the connection proved itself, :meth:`lost`
    when it ends.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        shuffle: bool = False,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.urls = list(urls)
        if shuffle:
            (rng or random.Random()).shuffle(self.urls)
        self._backoff = backoff or Backoff(base=0.5, cap=5.0)
        self._index = 0
        self._failures_in_round = 0
        self._on_trial = False
        #: Nodes whose last attempt found nothing answering (worth probing).
        self.unreachable: set[str] = set()

    @property
    def current(self) -> str:
        """The node the next attempt goes to (or the connection is on)."""
        return self.urls[self._index]

    def next_attempt(self) -> tuple[str, float]:
        """The node to try next, and the seconds to wait before trying it."""
        delay = 0.0
        if self._failures_in_round >= len(self.urls):
            delay = self._backoff.next_delay()
            self._failures_in_round = 0
        return self.current, delay

    def failed(self, error: BaseException | None = None) -> None:
        """The attempt on :attr:`current` failed (``error`` says how): move on."""
        if error is not None and not isinstance(error, BrokerRefused):
            self.unreachable.add(self.current)
        else:
            self.unreachable.discard(self.current)
        self._failures_in_round += 1
        self._advance()

    def connected(self) -> None:
        """The attempt on :attr:`current` connected; not yet proof that it works."""
        self.unreachable.discard(self.current)
        self._on_trial = True

    def healthy(self) -> None:
        """The connection works: the next outage starts from short delays again."""
        self._backoff.reset()
        self._failures_in_round = 0
        self._on_trial = False

    def lost(self) -> None:
        """The connection on :attr:`current` ended: the next node is tried at once.

        A connection lost before :meth:`healthy` counts as a failed attempt, so a node
        that accepts and then refuses backs off like one that refuses outright.
        """
        if self._on_trial:
            self._failures_in_round += 1
        else:
            self._failures_in_round = 0
        self._on_trial = False
        self._advance()

    def prefer(self, url: str) -> None:
        """Try ``url`` next (a probe found it answering)."""
        self._index = self.urls.index(url)

    def _advance(self) -> None:
        self._index = (self._index + 1) % len(self.urls)


async def probe(url: str, ssl_context: ssl.SSLContext | None = None) -> bool:
    """True when an AMQP broker answers at ``url``: it sends ``Connection.Start``.

    Sends only the protocol header and closes; never raises.
    """
    parsed = yarl.URL(url)
    tls = parsed.scheme == "amqps"
    port = parsed.port or (5671 if tls else 5672)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                parsed.host, port, ssl=ssl_context if tls else None
            )
            writer.write(_PROTOCOL_HEADER)
            await writer.drain()
            head = await reader.read(len(_START_PREFIX))
        return head == _START_PREFIX
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return False
    finally:
        if writer is not None:
            writer.transport.abort()


async def reconnect(
    policy: FailoverPolicy,
    attempt: Callable[[str], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event,
    give_up: Callable[[BrokerError], bool] = lambda _error: False,
    ssl_context: ssl.SSLContext | None = None,
    quiet: bool = False,
) -> T | None:
    """Call ``attempt(url)`` on node after node until one succeeds; None once ``stop`` is set.

    A failed attempt is one WARNING naming ``what``, the node, the reason and what comes
    next (the next node, or the wait before the next round), for the first
    :data:`LOUD_FAILURES` attempts; after that they are DEBUG lines, and a WARNING every
    :data:`REMINDER_INTERVAL` seconds says the outage goes on, so a long outage is a few
    lines.  With ``quiet`` (a second connection to the nodes another loop reports on)
    only refusals are WARNINGs: an unreachable node is that other loop's to report.
    ``attempt`` raises :class:`BrokerError` for the expected failures; one that
    ``give_up`` accepts is raised again at once.
    """
    loop = asyncio.get_running_loop()
    failures, started = 0, loop.time()
    reminded = started
    url, delay = policy.next_attempt()
    while not stop.is_set():
        if delay > 0:
            url = await _wait_or_probe(policy, delay, stop, ssl_context, quiet=quiet) or url
            if stop.is_set():
                return None
            policy.prefer(url)
        try:
            result = await attempt(url)
        except BrokerError as exc:
            policy.failed(exc)
            if give_up(exc):
                raise
            failures += 1
            url, delay = policy.next_attempt()
            if delay > 0:
                then = f"retrying in {delay:.1f} s"
                if len(policy.urls) > 1:
                    then = f"every node failed; {then}"
            else:
                then = f"trying {mask_url(url)}" if len(policy.urls) > 1 else "retrying"
            now = loop.time()
            if quiet and not isinstance(exc, BrokerRefused):
                log.debug("%s: %s; %s", what, exc, then)
            elif failures <= LOUD_FAILURES:
                log.warning("%s: %s; %s", what, exc, then)
            elif now - reminded >= REMINDER_INTERVAL:
                reminded = now
                log.warning(
                    "%s: still failing after %d attempts in %.0f s: %s; %s",
                    what,
                    failures,
                    now - started,
                    exc,
                    then,
                )
            else:
                log.debug("%s: %s; %s", what, exc, then)
            continue
        policy.connected()
        if failures > LOUD_FAILURES and not quiet:
            log.info(
                "%s: broker %s reached after %d failed attempts in %.0f s",
                what,
                mask_url(url),
                failures,
                loop.time() - started,
            )
        return result
    return None


async def _wait_or_probe(
    policy: FailoverPolicy,
    delay: float,
    stop: asyncio.Event,
    ssl_context: ssl.SSLContext | None,
    *,
    quiet: bool,
) -> str | None:
    """Wait ``delay`` seconds; return early with a node that started answering."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while not stop.is_set():
        left = deadline - loop.time()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(PROBE_INTERVAL, left))
        candidates = [url for url in policy.urls if url in policy.unreachable]
        if not candidates or stop.is_set():
            continue
        answers = await asyncio.gather(*(probe(url, ssl_context) for url in candidates))
        for url, answered in zip(candidates, answers, strict=True):
            if answered:
                log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "broker %s answers again",
                    mask_url(url),
                )
                return url
    return None
