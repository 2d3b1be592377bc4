"""The AMI secret and the AMQP password never show: not in logs, messages, reprs or errors.

Each test drives the bridge through a situation where a secret is at hand (a refused
AMI login by MD5 and by plain secret, a normal run with reconnects on both sides, a
broker refusing the password, wrong settings) and gathers everything an operator or a
consumer could see: every log record of every logger at DEBUG, the stderr of a bridge
process, every published message (body, headers and properties, bound to ``#``), and
``str()``/``repr()`` of the settings, session, publisher, app and the errors raised.
The secrets are distinctive strings, so a hit is never a coincidence.

What is allowed to show: the MD5 key of a login (a hash, not the secret) and the user
names.  What is not: the secrets themselves, whole or percent-encoded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from urllib.parse import quote

import pytest
import yarl
from pydantic import SecretStr, ValidationError

from bridge.ami.client import StreamItem
from bridge.ami.errors import LoginFailed
from bridge.ami.listener import Connected, Disconnected
from bridge.ami.session import AmiSession
from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import AmiTarget
from bridge.cli.exit_codes import ExitCode
from bridge.publish.amqp import AmqpPublisher
from bridge.publish.broker import BrokerAuthError, mask_url, scrub
from bridge.service.app import BridgeApp
from bridge.settings import AmiServer, Settings, load_settings
from tests.integration.harness import (
    BridgeProcess,
    Consumer,
    bridge_settings,
    broker_address,
    free_port,
    run_args,
    running_bridge,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy

AMI_SECRET = "s3cr3t-AMI-7f2c"
AMQP_PASSWORD = "pw-AMQP-91b4"
#: The simulator's secret when the bridge's must be refused.
PBX_SECRET = "pbx-only-0d9e"
SECRETS = {"AMI secret": AMI_SECRET, "AMQP password": AMQP_PASSWORD, "PBX secret": PBX_SECRET}
SERVER = "pbx1"
FAST_RETRY = {"ami_reconnect_base": 0.05, "ami_reconnect_cap": 0.2}


class Exposure:
    """Every text an operator or a consumer could see, by where it was seen."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, *objects: object) -> None:
        """``str()`` and ``repr()`` of each object; for an error, of its chain and args too."""
        for obj in objects:
            self.texts += [(f"str({where})", str(obj)), (f"repr({where})", repr(obj))]
            if isinstance(obj, BaseException):
                for linked in _chain(obj):
                    self.texts += [
                        (f"{where} chain", repr(linked)),
                        (f"{where} chain", str(linked)),
                    ]
                    self.texts += [(f"{where} chain args", repr(arg)) for arg in linked.args]

    def add_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        # Records are formatted as they are emitted: later, their args may have changed.
        self.texts.append(("the formatted log", caplog.text))
        for record in caplog.records:
            shown = [getattr(record, "message", ""), record.exc_text or ""]
            self.texts += [(f"log record of {record.name}", text) for text in shown]

    def add_messages(self, consumer: Consumer) -> None:
        for message in consumer.messages:
            where = f"published message {message.routing_key}"
            self.texts += [
                (where, message.body.decode("utf-8", "replace")),
                (where, repr(message.headers)),
                (where, repr(message.info())),
            ]

    def assert_clean(self, **extra: str) -> None:
        """No secret (nor its percent-encoded form) in anything gathered."""
        assert self.texts, "nothing was gathered"
        secrets = {**SECRETS, **extra}
        for where, text in self.texts:
            for name, secret in secrets.items():
                for form in {secret, quote(secret, safe="")}:
                    at = text.find(form)
                    assert at < 0, f"{where} shows the {name}: ...{text[max(0, at - 80) : at]}"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every error it was raised from or during, each once."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is not None and all(current is not s for s in seen):
            seen.append(current)
            pending += [current.__cause__, current.__context__]
    return seen


@pytest.fixture
def exposure(caplog: pytest.LogCaptureFixture) -> Exposure:
    """Gathers texts; every log record of every logger is captured at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="bridge")
    return Exposure()


def login_failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if "AMI login as 'bridge'" in r.getMessage())


# -- AMI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_a_refused_ami_login_shows_no_secret(
    auth: str,
    exposure: Exposure,
    caplog: pytest.LogCaptureFixture,
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
) -> None:
    async with (
        AmiSimulator(port=0, secret=PBX_SECRET, rate=50, auth_failure_delay=0) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami_secret=AMI_SECRET,
            ami_auth=auth,
            include_raw=True,
            **FAST_RETRY,
        )
        async with running_bridge(settings) as app:
            await wait_for(lambda: login_failures(caplog) >= 2, 10, "two refused logins")
            exposure.add("settings", settings)
            exposure.add("app", app, app.publisher, app.pipelines[0].session)
            exposure.add("readiness", app.readiness())

        # The same refusal as an exception, from a session that does not retry.
        session = AmiSession(
            AmiTarget("bridge", "127.0.0.1", pbx.port),
            SecretStr(AMI_SECRET),
            _NoListener(),
            auth=auth,  # type: ignore[arg-type]
            retry_on_login_failure=False,
        )
        with pytest.raises(LoginFailed) as refused:
            async with asyncio.timeout(10):
                await session.run()
        exposure.add("LoginFailed", refused.value)
        exposure.add("session", session)
        await consumer.wait_quiet(0.2)
    exposure.add_logs(caplog)
    exposure.add_messages(consumer)
    exposure.assert_clean()
    assert "Authentication failed" in str(refused.value)


class _NoListener:
    """A session listener that ignores everything."""

    def on_connected(self, info: Connected) -> None:
        pass

    def on_disconnected(self, info: Disconnected) -> None:
        pass

    def on_items(self, epoch: int, items: list[StreamItem]) -> None:
        pass


async def test_a_normal_run_with_reconnects_shows_no_secret(
    exposure: Exposure,
    caplog: pytest.LogCaptureFixture,
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "ami_secret"
    secret_file.write_text(AMI_SECRET + "\n")
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=AMI_SECRET, rate=200, seed=9) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        broker = yarl.URL(via_proxy(amqp_url, proxy))
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=str(broker.with_password(None)),
            amqp_password=broker.password,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami_secret_file=secret_file,
            include_raw=True,
            amqp_reconnect_base=0.05,
            amqp_reconnect_cap=0.2,
            **FAST_RETRY,
        )
        async with running_bridge(settings) as app:
            # Logged in on both sides: a reset before the bridge reads the login's
            # answer would be a failed first login, not a reconnect.
            await wait_for(lambda: app.pipelines[0].session.connected, 10, "AMI logged in")
            pbx.drop_connections()  # an AMI reconnect
            await wait_for(lambda: app.pipelines[0].session.reconnects >= 1, 10, "AMI back")
            await proxy.cut()  # a broker reconnect
            await wait_for(lambda: not app.publisher.is_connected, 5, "the broker link down")
            proxy.heal()
            await wait_for(lambda: app.publisher.is_connected, 10, "the broker link back")

            def two_epochs_of_events(bodies: list[dict[str, object]]) -> bool:
                epochs = {b["epoch"] for b in bodies if b["kind"] == "event"}
                return len(epochs) >= 2 and len(bodies) > 200

            await consumer.wait_until(two_epochs_of_events, 15, "events of two epochs")
            exposure.add("settings", settings)
            exposure.add("app", app, app.publisher, app.pipelines[0].session)
    assert len(consumer.messages) > 200
    exposure.add_logs(caplog)
    exposure.add_messages(consumer)
    # The broker's password is the test broker's own, so only its URL form is distinctive.
    exposure.assert_clean(**{"AMQP URL with password": f"{broker.user}:{broker.password}@"})


# -- AMQP -----------------------------------------------------------------------------------


def with_password(amqp_url: str, password: str) -> str:
    return str(yarl.URL(amqp_url).with_password(password))


async def test_a_refused_broker_password_shows_no_secret(
    exposure: Exposure,
    caplog: pytest.LogCaptureFixture,
    amqp_url: str,
    amqp_names: AmqpNames,
    tmp_path: Path,
) -> None:
    settings = bridge_settings(
        {SERVER: free_port()},
        amqp=str(yarl.URL(amqp_url).with_password(None)),
        exchange=amqp_names.exchange,
        journal_dir=tmp_path / "journal",
        ami_secret=AMI_SECRET,
        amqp_password=AMQP_PASSWORD,
        amqp_on_auth_failure="retry",
        amqp_reconnect_base=0.05,
        amqp_reconnect_cap=0.2,
    )
    app = BridgeApp(settings)
    task = asyncio.create_task(app.run())
    try:
        await wait_for(
            lambda: sum("refused the login" in r.getMessage() for r in caplog.records) >= 2,
            10,
            "two refused broker logins",
        )
        exposure.add("settings", settings)
        exposure.add("app", app, app.publisher, app.pipelines[0].session)
    finally:
        app.request_stop()
        async with asyncio.timeout(10):
            assert await task is ExitCode.OK

    # The same refusal raised by a publisher given the password in its URL.
    publisher: AmqpPublisher[int] = AmqpPublisher(with_password(amqp_url, AMQP_PASSWORD))
    with pytest.raises(BrokerAuthError) as refused:
        await publisher.connect()
    exposure.add("BrokerAuthError", refused.value)
    exposure.add("publisher", publisher)
    exposure.add_logs(caplog)
    exposure.assert_clean()
    assert "refused the login of user 'guest'" in str(refused.value)


@pytest.mark.parametrize("password", [AMQP_PASSWORD, "pw/AMQP@91b4:x%", "pw AMQP#91b4?"])
def test_broker_urls_and_library_texts_are_masked(password: str) -> None:
    url = f"amqps://bridge:{quote(password, safe='')}@rabbitmq:5671/vhost"
    masked = "amqps://bridge:***@rabbitmq:5671/vhost"
    assert mask_url(url) == masked
    echoed = f"cannot connect to {url} (password {password!r})"
    assert scrub(echoed, url) == f"cannot connect to {masked} (password '***')"


# -- the process and its settings --------------------------------------------------------


async def test_a_bridge_process_shows_no_secret_on_stderr(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    """A refused broker password, then a refused plain AMI login, at DEBUG."""
    exchange, journal_dir = amqp_names.exchange, tmp_path / "journal"
    async with AmiSimulator(port=0, secret=PBX_SECRET, rate=0, auth_failure_delay=0) as pbx:
        no_password = str(yarl.URL(amqp_url).with_password(None))
        args = run_args(
            {SERVER: pbx.port},
            amqp=no_password,
            exchange=exchange,
            journal_dir=journal_dir,
            log_level="DEBUG",
        )
        env = {"AMI_BRIDGE_AMQP_PASSWORD": AMQP_PASSWORD, "AMI_BRIDGE_AMI_SECRET": AMI_SECRET}
        async with BridgeProcess(args, tmp_path / "refused-broker.log", env) as bridge:
            assert await bridge.wait(15) == ExitCode.CONFIG_ERROR
        broker_refused = bridge.log()
        assert "refused the login of user 'guest'" in broker_refused

        args = run_args(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=exchange,
            journal_dir=journal_dir,
            log_level="DEBUG",
            ami_auth="plain",
            **FAST_RETRY,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": AMI_SECRET}
        async with BridgeProcess(args, tmp_path / "refused-ami.log", env) as bridge:
            await wait_for(
                lambda: bridge.log().count("AMI login as 'bridge'") >= 2, 15, "two refused logins"
            )
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == ExitCode.OK
        ami_refused = bridge.log()
    exposure = Exposure()
    exposure.texts += [("stderr", broker_refused), ("stderr", ami_refused)]
    exposure.assert_clean()


async def test_wrong_settings_holding_a_secret_never_print_it(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'ami_secret = "{AMI_SECRET}"\npublish_window = 0\n'
        f'[[servers]]\nid = "pbx1"\nurl = "ami://bridge:{PBX_SECRET}@127.0.0.1"\n'
    )
    runs = {
        "URL with a secret": ["run", "--ami", f"pbx1=ami://bridge:{AMI_SECRET}@127.0.0.1"],
        "bare URL with a secret": ["run", "--ami", f"ami://bridge:{AMI_SECRET}@127.0.0.1"],
        "TOML file": ["run", "--config", str(config)],
    }
    exposure = Exposure()
    for name, args in runs.items():
        env = {"AMI_BRIDGE_AMQP": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:1/"}
        async with BridgeProcess(args, tmp_path / f"{name}.log", env) as bridge:
            assert await bridge.wait(15) == ExitCode.CONFIG_ERROR, bridge.log()
        assert "invalid setting" in bridge.log() or "must not contain a password" in bridge.log()
        exposure.texts.append((f"stderr ({name})", bridge.log()))
    exposure.assert_clean()


def test_settings_and_servers_hide_their_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ami_secret": AMI_SECRET,
            "amqp_password": AMQP_PASSWORD,
            "servers": [{"id": "pbx2", "url": "amis://bridge@pbx2", "secret": PBX_SECRET}],
        }
    )
    assert settings.amqp_url_with_password().count(quote(AMQP_PASSWORD)) == 1
    exposure = Exposure()
    exposure.add("Settings", settings, *settings.resolved_servers())
    exposure.texts.append(("Settings.model_dump_json()", settings.model_dump_json()))
    exposure.assert_clean()


def test_settings_repr_masks_a_password_in_the_broker_url() -> None:
    settings = Settings(amqp=f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/")
    exposure = Exposure()
    exposure.add("Settings", settings)
    exposure.assert_clean()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ami": [f"ami://bridge:{AMI_SECRET}@127.0.0.1"]},
        {"servers": [{"id": "pbx1", "url": f"ami://bridge:{AMI_SECRET}@127.0.0.1"}]},
        {"ami_secret": AMI_SECRET, "ami": ["a=ami://b@h", "a=ami://b@h"]},
        {"unknown_setting": AMI_SECRET},
    ],
    ids=["ami-url", "servers-url", "duplicate-ids-with-secret", "unknown-key"],
)
def test_settings_validation_errors_hide_the_secrets(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(**kwargs)  # type: ignore[arg-type]
    exposure = Exposure()
    exposure.add("ValidationError", error.value)
    errors = error.value.errors(include_input=False)  # what the CLI reads: never the input
    exposure.texts.append(("ValidationError.errors()", repr(errors)))
    exposure.assert_clean()


def test_an_ami_server_url_with_a_secret_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValidationError) as error:
        AmiServer(id="pbx1", url=f"ami://bridge:{AMI_SECRET}@127.0.0.1")
    message = error.value.errors()[0]["msg"]
    assert "must not contain a password" in message
    assert AMI_SECRET not in message
