"""``ami-bridge healthcheck`` against real HTTP servers on 127.0.0.1.

A tiny ``http.server`` answers 200 on ``/healthz`` and 503 on ``/readyz``; a closed port
gives a refused connection and a listening socket that never answers gives a timeout.
Every case goes through ``bridge.cli.main.main`` so the subcommand's registration is
tested too.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.cli.healthcheck import PORT_ENV, default_url
from bridge.cli.main import main
from bridge.settings import DEFAULT_METRICS_PORT


class _Handler(BaseHTTPRequestHandler):
    statuses = {"/healthz": 200, "/readyz": 503}

    def do_GET(self) -> None:
        self.send_response(self.statuses.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_200_exits_0_silently(http_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--url", f"http://127.0.0.1:{http_port}/healthz"]) == 0
    assert capsys.readouterr().err == ""


def test_503_exits_1_with_one_line(http_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{http_port}/readyz"
    assert main(["healthcheck", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err == f"healthcheck: {url} answered HTTP 503\n"


def test_refused_connection_exits_1(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--url", f"http://127.0.0.1:{closed_port}/healthz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("healthcheck: cannot reach ")
    assert "refused" in err.lower()
    assert err.count("\n") == 1


def test_silent_server_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    # A listening socket nobody accepts from: the TCP handshake completes, no answer comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/healthz"
        started = time.monotonic()
        assert main(["healthcheck", "--url", url, "--timeout", "0.3"]) == 1
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    err = capsys.readouterr().err
    assert err.startswith(f"healthcheck: cannot reach {url}: ")
    assert "timed out" in err


def test_default_url_follows_the_metrics_port_environment(
    http_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PORT_ENV, str(http_port))
    assert main(["healthcheck"]) == 0


def test_default_url_without_environment() -> None:
    assert default_url({}) == f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/healthz"


@pytest.mark.parametrize("value", ["0", "nine", "70000"])
def test_unusable_metrics_port_environment_exits_1(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PORT_ENV, value)
    assert main(["healthcheck"]) == 1
    assert capsys.readouterr().err == (
        f"healthcheck: {PORT_ENV}={value!r} is not a TCP port the bridge can listen on\n"
    )


def test_only_http_urls_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["healthcheck", "--url", "file:///etc/passwd"])
    assert exited.value.code == 2
    assert "http://" in capsys.readouterr().err


def test_an_http_proxy_in_the_environment_is_ignored(
    http_port: int, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    assert main(["healthcheck", "--url", f"http://127.0.0.1:{http_port}/healthz"]) == 0
