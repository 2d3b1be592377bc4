"""``ami-bridge healthcheck``: exit 0 when the bridge's health endpoint answers HTTP 200.

Slim container images have neither curl nor wget, so the image's ``HEALTHCHECK`` runs
this instead: one GET with the standard library's urllib and a hard timeout, exit 0 on
HTTP 200 and 1 on anything else (another status, a refused connection, a timeout), with
one line on stderr saying which.

Without ``--url`` the port comes from ``AMI_BRIDGE_METRICS_PORT`` when it is set, so a
container that moves the metrics port through the environment keeps a working health
check without repeating the port in its ``HEALTHCHECK``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from bridge.cli.exit_codes import ExitCode
from bridge.settings import DEFAULT_METRICS_PORT, ENV_PREFIX

#: Environment variable whose value, when set, is the port of the default URL.
PORT_ENV = f"{ENV_PREFIX}METRICS_PORT"
DEFAULT_TIMEOUT = 3.0


def default_url(environ: Mapping[str, str] = os.environ) -> str:
    """The liveness URL on loopback, on the port the bridge itself would use.

    Raises:
        ValueError: ``AMI_BRIDGE_METRICS_PORT`` is set but is not a TCP port.
    """
    text = environ.get(PORT_ENV, "").strip()
    if not text:
        return f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/healthz"
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{PORT_ENV}={text!r} is not a TCP port the bridge can listen on")
    return f"http://127.0.0.1:{int(text)}/healthz"


def _http_url(text: str) -> str:
    if urlsplit(text).scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        type=_http_url,
        default=None,
        help=f"URL to GET (default: http://127.0.0.1:${PORT_ENV}/healthz, "
        f"port {DEFAULT_METRICS_PORT} when unset)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the answer (default: %(default)s)",
    )


def check(url: str, timeout: float) -> str | None:
    """GET ``url``; ``None`` when it answers HTTP 200, else why it is unhealthy."""
    # An HTTP_PROXY in the container's environment must not send a loopback probe
    # through a proxy, so the opener has no proxy handler at all.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        status = e.code
    except urllib.error.URLError as e:
        return f"cannot reach {url}: {e.reason}"
    except (OSError, ValueError) as e:
        # Timeouts while reading, resets and malformed responses land here.
        return f"cannot reach {url}: {e or type(e).__name__}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def run(args: argparse.Namespace) -> int:
    try:
        url = args.url or default_url()
    except ValueError as e:
        print(f"healthcheck: {e}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    problem = check(url, args.timeout)
    if problem is None:
        return int(ExitCode.OK)
    print(f"healthcheck: {problem}", file=sys.stderr)
    return int(ExitCode.FAILURE)
