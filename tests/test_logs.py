"""bridge.logs: the bridge's and the libraries' levels apart, JSON lines, server ids."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bridge.logs import ServerLog, configure_logging


@pytest.fixture
def stderr() -> io.StringIO:
    """What configure_logging writes (conftest puts the root logger back after)."""
    return io.StringIO()


def test_debug_for_the_bridge_leaves_the_libraries_at_warning(stderr: io.StringIO) -> None:
    configure_logging("DEBUG", stream=stderr)
    logging.getLogger("bridge.publish.amqp").debug("bridge detail")
    logging.getLogger("aiormq.connection").debug("frame dump")
    logging.getLogger("asyncio").info("loop detail")
    logging.getLogger("aio_pika.tools").warning("library warning")
    text = stderr.getvalue()
    assert "bridge detail" in text
    assert "frame dump" not in text
    assert "loop detail" not in text
    assert "library warning" in text


def test_the_library_level_is_a_knob_of_its_own(stderr: io.StringIO) -> None:
    configure_logging("WARNING", library_level="DEBUG", stream=stderr)
    logging.getLogger("aiormq.connection").debug("frame dump")
    logging.getLogger("bridge.service.app").info("bridge info")
    assert "frame dump" in stderr.getvalue()
    assert "bridge info" not in stderr.getvalue()


def test_json_lines_carry_the_server_of_a_pbx_line(stderr: io.StringIO) -> None:
    configure_logging("INFO", fmt="json", stream=stderr)
    ServerLog(logging.getLogger("bridge.ami.session"), "pbx1").info("logged in to %s", "x")
    logging.getLogger("bridge.service.app").warning("no server here")
    first, second = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert first["message"] == "pbx1: logged in to x"
    assert first["server"] == "pbx1"
    assert (first["level"], first["logger"]) == ("INFO", "bridge.ami.session")
    assert "time" in first
    assert "server" not in second
    assert second["level"] == "WARNING"


def test_text_lines_start_with_the_server_id(stderr: io.StringIO) -> None:
    configure_logging("INFO", stream=stderr)
    ServerLog(logging.getLogger("bridge.ami.session"), "pbx2").warning("lost")
    assert stderr.getvalue().rstrip().endswith("WARNING bridge.ami.session: pbx2: lost")
