"""Wrong credentials, wrong settings and malformed AMI: a clear message, the documented
exit code or a paced retry, no secret in any output, and nothing that was read lost.

The bridge runs as a child process (``python -m bridge ...``) so exit codes and stderr are
the real ones an operator sees.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
from pathlib import Path

import pytest

from bridge.ami.simulator import AmiSimulator
from tests.ami.fake_server import FakeAmiServer
from tests.integration.contract import Body, validate_body
from tests.integration.harness import SECRET, BridgeProcess, json_lines, replay, run_args, wait_for
from tests.support import AmqpNames

SERVER = "pbx1"
WRONG_SECRET = "Wr0ng-AMI-s3cret-4711"
WRONG_PASSWORD = "Wr0ng-AMQP-passw0rd-0815"


async def test_wrong_ami_secret_with_exit_policy_exits_1_naming_user_and_host(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=0, auth_failure_delay=0.05) as pbx:
        args = run_args(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami_on_login_failure="exit",
        )
        env = {"AMI_BRIDGE_AMI_SECRET": WRONG_SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            assert await bridge.wait(15) == 1
    log = bridge.log()
    login_failed = r"AMI login as 'bridge' on 127\.0\.0\.1:\d+ failed: Authentication failed"
    assert re.search(login_failed, log)
    assert "exiting (ami_on_login_failure=exit)" in log
    assert WRONG_SECRET not in log


async def test_wrong_ami_secret_with_retry_policy_backs_off_and_stays_up(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with FakeAmiServer(users={"bridge": SECRET}) as pbx:
        args = run_args(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami_on_login_failure="retry",
            ami_reconnect_base=0.2,
            ami_reconnect_cap=1.0,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": WRONG_SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            await wait_for(lambda: len(pbx.connections) > 0, 15, "the first login attempt")
            await asyncio.sleep(4.0)
            attempts = len(pbx.connections)  # a refused login closes its connection
            assert bridge.running
            # The backoff window doubles from 0.2 s up to 1 s: a handful of attempts in 4 s,
            # where a tight loop would make thousands.
            assert 2 <= attempts <= 25
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == 0
    log = bridge.log()
    retried = r"AMI login as 'bridge' on 127\.0\.0\.1:\d+ failed.*retrying in"
    assert len(re.findall(retried, log)) >= 2
    assert WRONG_SECRET not in log


async def test_broker_refusing_the_credentials_exits_2_naming_host_and_user(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with FakeAmiServer(users={"bridge": SECRET}) as pbx:
        args = run_args(
            {SERVER: pbx.port},
            amqp=amqp_url.replace("guest:guest@", "guest@"),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET, "AMI_BRIDGE_AMQP_PASSWORD": WRONG_PASSWORD}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            assert await bridge.wait(20) == 2
        assert pbx.connections == []  # nothing is read from AMI without a broker
    log = bridge.log()
    assert re.search(r"broker 127\.0\.0\.1:\d+ refused the login of user 'guest'", log)
    assert "exiting (amqp_on_auth_failure=exit)" in log
    assert WRONG_PASSWORD not in log


@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        ("--server-id", "bad.id", "server_id"),
        ("--routing-key", "{nope}", "{nope}"),
        ("--publish-window", "0", "publish_window"),
        ("--ami", "pbx1=http://127.0.0.1:5038", "AMI URL scheme must be"),
    ],
)
async def test_a_wrong_setting_is_one_line_and_exit_code_2(
    flag: str, value: str, setting: str, tmp_path: Path
) -> None:
    args = ["run", flag, value, "--journal-dir", str(tmp_path / "journal"), "--metrics-port", "0"]
    async with BridgeProcess(args, tmp_path / "bridge.log") as bridge:
        assert await bridge.wait(15) == 2
    lines = bridge.log().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ami-bridge: ")
    assert setting in lines[0]


def malformed_capture() -> tuple[bytes, list[str]]:
    """A capture with every kind of damage, and the routing key each event must get."""
    oversize = b"x" * (4 * 1024 * 1024 + 10)  # over the parser's default 4 MiB limit
    messages = [
        (
            b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 5\r\nLastReload: 5\r\n"
            b"Status: Fully Booted",
            "pbx1.system.fullybooted",
        ),
        (
            b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: soon\r\nLastReload: 5\r\n"
            b"Status: Fully Booted",
            "pbx1.system.fullybooted",  # a value nobody foresaw is drift, not invalid
        ),
        (
            b"Event: Reload\r\nPrivilege: system,all\r\nModule: All\r\nthis line has no colon\r\n"
            b"Status: 0",
            "pbx1.system.reload",
        ),
        (
            b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: none\r\nUniqueid: none\r\n"
            b"Variable: NAME\r\nValue: caf\xe9",
            "pbx1.dialplan.varset",
        ),
        (
            b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: big\r\nData: " + oversize,
            "pbx1.invalid.userevent",
        ),
        (
            b"Event: Reload\r\nPrivilege: system,all\r\nModule: All\r\nStatus: 0",
            "pbx1.system.reload",
        ),
    ]
    data = b"Asterisk Call Manager/11.0.0\r\n"
    data += b"".join(message + b"\r\n\r\n" for message, _ in messages)
    data += b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/1"  # cut off
    return data, [key for _, key in messages] + ["pbx1.invalid.hangup"]


async def test_replay_of_a_malformed_capture_gives_one_line_per_event(tmp_path: Path) -> None:
    data, keys = malformed_capture()
    path = tmp_path / "malformed.ami"
    await asyncio.to_thread(path.write_bytes, data)
    code, out, err = await replay(path, SERVER)
    assert code == 0
    assert "2 message(s) went to the invalid route" in err.decode()
    lines = json_lines(out)
    assert [line["routing_key"] for line in lines] == keys
    bodies: list[Body] = [line["body"] for line in lines]
    for body in bodies:
        validate_body(body)
    assert [b["seq"] for b in bodies] == list(range(1, len(keys) + 1))
    bad_type, colonless, latin1, oversize, truncated = (bodies[i] for i in (1, 2, 3, 4, 6))

    assert bad_type["kind"] == "event"
    assert bad_type["extra"] == {"Uptime": "soon"}
    assert "Uptime" not in bad_type["fields"]
    assert bad_type["fields"]["LastReload"] == 5

    assert colonless["unparsed_lines"] == ["this line has no colon"]

    assert latin1["fields"]["Value"] == "caf\ufffd"
    key, value = latin1["raw_base64"][-1]
    assert (base64.b64decode(key), base64.b64decode(value)) == (b"Value", b"caf\xe9")

    for damaged in (oversize, truncated):
        assert damaged["kind"] == "invalid"
        assert damaged["raw"][0] == ["Event", damaged["event"]]
        assert [e["type"] for e in damaged["errors"]] == ["malformed"]
    assert oversize["raw"][-1][1].startswith("x" * 1000)
    assert truncated["raw"][-1] == ["Channel", "PJSIP/1"]
