"""The bridge's one settings object.

Every setting comes, highest precedence first, from a command-line flag, an
``AMI_BRIDGE_*`` environment variable, the optional TOML file (``--config`` or
``AMI_BRIDGE_CONFIG``), or its default.  Secrets (the AMI secret, the AMQP password) come
from the environment or from files, are held as ``SecretStr`` and never appear in a repr,
a log line or a published message.

Several PBXs: ``--ami`` repeats (``--ami pbx1=ami://bridge@10.0.0.1:5038``), the
environment variable takes a comma-separated list, or the TOML file gives
``[[servers]]`` tables with a per-server ``secret_file``.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.ami.target import AmiTarget, parse_ami_url
from bridge.publish.broker import TlsOptions, mask_url
from bridge.publish.topology import StreamRetention

ENV_PREFIX = "AMI_BRIDGE_"
DEFAULT_AMI_URL = "ami://bridge@127.0.0.1:5038"
DEFAULT_AMQP_URL = "amqp://guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "ami.events"
DEFAULT_METRICS_PORT = 9108
DEFAULT_SERVER_ID = "pbx1"

#: Actions that only read state: what the bus may run unless the operator enables more.
READ_ONLY_ACTIONS = (
    "Ping",
    "CoreStatus",
    "CoreSettings",
    "CoreShowChannels",
    "CoreShowChannelMap",
    "Status",
    "DeviceStateList",
    "ExtensionState",
    "ExtensionStateList",
    "PresenceState",
    "PresenceStateList",
    "QueueStatus",
    "QueueSummary",
    "Queues",
    "Agents",
    "BridgeList",
    "BridgeInfo",
    "ParkedCalls",
    "Parkinglots",
    "PJSIPShowEndpoints",
    "PJSIPShowEndpoint",
    "PJSIPShowContacts",
    "PJSIPShowRegistrationsOutbound",
    "SIPpeers",
    "SIPshowpeer",
    "IAXpeerlist",
    "IAXpeers",
    "MailboxCount",
    "MailboxStatus",
    "ListCategories",
    "ListCommands",
    "ShowDialPlan",
    "Getvar",
)

_SERVER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_server_id(value: str) -> str:
    """A server id is one routing-key segment: 1 to 64 letters, digits, ``-`` and ``_``.

    Raises:
        ValueError: anything else.
    """
    if not _SERVER_ID_RE.fullmatch(value):
        raise ValueError(
            f"server id {value!r} must be 1 to 64 letters, digits, '-' or '_' "
            "(it becomes a segment of every routing key)"
        )
    return value


_AMQP_SCHEMES = ("amqp", "amqps")
_USERINFO_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")


def check_amqp_url(url: str) -> str:
    """``url`` when it is a usable ``amqp://`` or ``amqps://`` broker URL.

    Raises:
        ValueError: it is not; the message shows the URL with its password masked.
    """
    shown = _USERINFO_PASSWORD.sub(r"\1***@", url)
    parts = urlsplit(url)
    if parts.scheme not in _AMQP_SCHEMES or not parts.netloc:
        raise ValueError(
            f"broker URL {shown!r} must look like amqp://user@host:5672/vhost (or amqps://)"
        )
    if not parts.hostname:
        raise ValueError(f"broker URL {shown!r} has no host")
    try:
        parts.port  # noqa: B018  # urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(f"broker URL {shown!r} has a port that is not 1 to 65535") from None
    return url


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> str | None:
    """The secret from its file when one is given, else from the value.

    Raises:
        ValueError: the file cannot be read (the message names the file, not its content).
    """
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read the {what} file {file}: {exc.strerror}") from exc
    return value.get_secret_value() if value is not None else None


ServerId = Annotated[str, AfterValidator(check_server_id)]


class AmiServer(BaseModel):
    """One PBX: its id (the first routing-key segment) and how to reach its AMI."""

    # Validation errors would quote the input, which can hold a secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: Annotated[ServerId, Field(description="Server id, the first segment of routing keys.")]
    url: Annotated[str, Field(description="ami://user@host:5038, or amis:// for TLS.")]
    secret: SecretStr | None = None
    secret_file: Path | None = None
    auth: Literal["md5", "plain"] | None = None
    ca_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_ami_url(value)
        return value

    @property
    def target(self) -> AmiTarget:
        return parse_ami_url(self.url)


def _split_list(value: Any) -> Any:
    """Comma-separated text (the environment) or a list of such texts (repeated flags)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part for item in value for part in _split_list(item)]
    return value


class Settings(BaseSettings):
    """Everything ``ami-bridge run`` can be told.  See the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", hide_input_in_errors=True
    )

    #: Set by :func:`load_settings` so the TOML source knows which file to read.
    config_file: ClassVar[Path | None] = None

    # -- AMI ---------------------------------------------------------------------------
    ami: Annotated[list[str], NoDecode] = Field(
        default=[DEFAULT_AMI_URL],
        description="AMI URL(s): ami://user@host:port or amis:// for TLS; ID=URL names the "
        "server. Repeat the flag, or comma-separate in the environment, for several PBXs.",
    )
    server_id: ServerId = Field(
        DEFAULT_SERVER_ID, description="Server id when one AMI URL is given."
    )
    servers: list[AmiServer] = Field(
        default=[], description="Per-PBX tables ([[servers]] in the TOML file)."
    )
    ami_secret: SecretStr | None = Field(None, description="AMI secret (prefer a secret file).")
    ami_secret_file: Path | None = Field(None, description="File holding the AMI secret.")
    ami_auth: Literal["md5", "plain"] = Field(
        "md5", description="Login with an MD5 challenge or a plain secret."
    )
    ami_ca_file: Path | None = Field(None, description="CA bundle to verify an amis:// server.")
    ami_events: str = Field(
        "on", description="Event mask sent with the login (on, or class names)."
    )
    ami_on_login_failure: Literal["retry", "exit"] = Field(
        "retry", description="After wrong credentials: back off and retry, or exit non-zero."
    )
    ami_ping_interval: float = Field(20.0, gt=0, description="Seconds between keepalive Pings.")
    ami_ping_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the Pong.")
    ami_connect_timeout: float = Field(10.0, gt=0, description="TCP/TLS connect and login timeout.")
    ami_reconnect_base: float = Field(0.5, gt=0, description="First reconnect backoff bound (s).")
    ami_reconnect_cap: float = Field(30.0, gt=0, description="Largest reconnect backoff (s).")

    # -- RabbitMQ ----------------------------------------------------------------------
    amqp: Annotated[list[str], NoDecode] = Field(
        default=[DEFAULT_AMQP_URL],
        description="amqp:// or amqps:// URL of the broker. Repeat the flag, or comma-separate "
        "in the environment, or give a TOML list, for the nodes of one cluster.",
    )
    amqp_endpoint_order: Literal["ordered", "shuffled"] = Field(
        "ordered",
        description="Try the broker URLs in the order given, or shuffled once at start "
        "(spreads a fleet of bridges over the cluster).",
    )
    amqp_password: SecretStr | None = Field(
        None, description="Broker password (overrides the URL's)."
    )
    amqp_password_file: Path | None = Field(None, description="File holding the broker password.")
    amqp_ca_file: Path | None = Field(None, description="CA bundle to verify an amqps:// broker.")
    amqp_tls_verify: bool = Field(True, description="Verify the broker's TLS certificate.")
    amqp_on_auth_failure: Literal["retry", "exit"] = Field(
        "exit",
        description="When the broker refuses the credentials, the virtual host or a permission "
        "at start: exit with code 2, or retry with backoff (refusals later are always retried).",
    )
    amqp_reconnect_base: float = Field(
        0.5, gt=0, description="First broker reconnect backoff bound (s)."
    )
    amqp_reconnect_cap: float = Field(
        5.0,
        gt=0,
        description="Largest broker reconnect backoff (s), waited only after every node failed.",
    )
    amqp_heartbeat: int = Field(
        3,
        ge=0,
        le=60,
        description="AMQP heartbeat (s); a broker silent for 3 heartbeats plus 3 s is treated "
        "as lost (12 s by default). 0 turns heartbeats off.",
    )
    amqp_confirm_timeout: float = Field(
        15.0,
        gt=0,
        description="A publish unconfirmed this long (s) while the broker is not blocking "
        "means a hung broker: the connection is dropped and the next node tried.",
    )
    publish_refused_retries: int = Field(
        5,
        ge=0,
        description="Times a message the broker nacks or returns is published again before "
        "it is retired and announced on {server}.bridge.refused.",
    )
    publish_refused_backoff: float = Field(
        1.0, gt=0, description="First pause before a refused message is published again (s)."
    )
    exchange: str = Field(
        DEFAULT_EXCHANGE, min_length=1, description="Topic exchange to publish to."
    )
    unrouted_queue_type: Literal["classic", "quorum"] = Field(
        "classic",
        description="Type of the queue <exchange>.unrouted when the bridge creates it: quorum "
        "survives a cluster node (an existing queue keeps its type).",
    )
    unrouted_max_length: int = Field(
        100_000,
        ge=0,
        description="Messages <exchange>.unrouted keeps when the bridge creates it; beyond "
        "that the oldest are dropped (x-overflow drop-head). 0: no cap.",
    )
    routing_key: str = Field(
        "{server}.{class}.{event}", description="Routing-key template: {server}, {class}, {event}."
    )
    # RabbitMQ confirms persistent messages in batches once they are on disk: with 1,000
    # in flight the end-to-end bench kept 1.25-1.54 of 2 cores busy with a backlog in the
    # journal, waiting for confirms; with 4,000, 1.65-1.84 (bench/e2e.py).
    publish_window: int = Field(4000, ge=1, description="Publishes in flight awaiting confirms.")
    include_raw: bool = Field(False, description="Add the raw AMI headers to every message.")
    redact_headers: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="AMI headers to leave out of published events (case-insensitive glob "
        "patterns, e.g. *ChanVariable,*CallerIDName); they are removed before validation.",
    )

    # -- history stream ------------------------------------------------------------------
    stream: bool = Field(
        True, description="Keep a replayable history in the stream <exchange>.stream."
    )
    stream_max_age: float = Field(
        86400.0, gt=0, description="Oldest message the stream keeps (s, x-max-age)."
    )
    stream_max_bytes: int = Field(
        1024**3, gt=0, description="Stream size cap (bytes, x-max-length-bytes)."
    )

    # -- state resync after a (re)login -------------------------------------------------
    resync_actions: Annotated[list[str], NoDecode] = Field(
        default=[
            "CoreShowChannels",
            "DeviceStateList",
            "ExtensionStateList",
            "QueueStatus",
            "PJSIPShowEndpoints|SIPpeers|IAXpeerlist",
        ],
        description="List actions run after FullyBooted; their items are published as "
        "snapshot events. A|B runs the first the PBX knows. Empty turns resync off.",
    )

    # -- AMI actions over the bus ---------------------------------------------------------
    rpc_exchange: str = Field(
        "ami.actions", description="Exchange the bridge takes action requests from ('' = off)."
    )
    rpc_allow: Annotated[list[str], NoDecode] = Field(
        default=list(READ_ONLY_ACTIONS),
        description="Actions the bus may run: read-only ones by default.",
    )
    rpc_enable: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Further actions to allow, each named explicitly (e.g. Originate).",
    )
    rpc_timeout: float = Field(10.0, gt=0, description="Seconds an action may take.")

    # -- journal -----------------------------------------------------------------------
    journal_dir: Path = Field(Path("journal"), description="Directory of the write-ahead journal.")
    journal_fsync: Literal["always", "interval", "never"] = Field(
        "interval",
        description="interval: survives a crashed process; always: also a crashed machine.",
    )
    journal_max_bytes: int = Field(
        1024**3, gt=0, description="Journal size cap per server (bytes)."
    )
    journal_max_age: float = Field(86400.0, gt=0, description="Oldest journalled event kept (s).")
    journal_overflow: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="What a full journal drops; every drop is counted and announced."
    )
    journal_memory_max_bytes: int = Field(
        64 * 1024**2,
        ge=0,
        description="Events kept in memory per server while the journal's disk cannot be "
        "written (bytes); beyond, they are dropped, counted and announced.",
    )

    # -- hot standby (bridge.ha) ---------------------------------------------------------
    ha: bool = Field(
        False,
        description="Be one member of a hot-standby pair per server: both read and journal, "
        "the holder of the broker lock ami-bridge.lock.<server> publishes.",
    )
    instance_id: str = Field(
        "", description="This member's name in a hot-standby pair (default: the host name)."
    )
    ha_lock_heartbeat: int = Field(
        5,
        ge=1,
        le=60,
        description="AMQP heartbeat (s) of the lock connection; a member stops publishing "
        "when its lock connection was not proven alive within this time.",
    )
    ha_checkpoint_interval: float = Field(
        0.2, gt=0, le=10, description="Seconds between the active's checkpoints."
    )

    # -- process -----------------------------------------------------------------------
    metrics_host: str = Field("0.0.0.0", description="Address of /healthz, /readyz, /metrics.")
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535, description="0 disables it.")
    shutdown_timeout: float = Field(10.0, gt=0, description="Seconds to drain on SIGTERM.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the bridge's own lines."
    )
    log_library_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Log level of the libraries' lines (aiormq, aio_pika, asyncio)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per line, for log shippers."
    )
    status_interval: float = Field(
        60.0,
        ge=0,
        description="Seconds between status lines (per server: events read and published per "
        "second, journal depth and age, broker state); 0 turns them off.",
    )

    @field_validator(
        "ami",
        "amqp",
        "redact_headers",
        "resync_actions",
        "rpc_allow",
        "rpc_enable",
        mode="before",
    )
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("amqp")
    @classmethod
    def _check_amqp_urls(cls, value: list[str]) -> list[str]:
        return [check_amqp_url(url) for url in value]

    @model_validator(mode="after")
    def _check_servers(self) -> Settings:
        if not self.amqp:
            raise ValueError("amqp needs at least one broker URL")
        if self.amqp_ca_file is not None and not any(_is_tls(url) for url in self.amqp):
            raise ValueError("amqp_ca_file is only used with an amqps:// broker URL")
        ids = [server.id for server in self.resolved_servers()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"server ids must be unique, repeated: {', '.join(duplicates)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if cls.config_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=cls.config_file),)
        return sources

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A password typed into the broker URL must not reach a log through a repr.
        for name, value in super().__repr_args__():
            yield name, ([mask_url(url) for url in value] if name == "amqp" else value)

    def resolved_servers(self) -> list[AmiServer]:
        """Every PBX to bridge: the ``servers`` tables, else one per ``ami`` URL."""
        if self.servers:
            return list(self.servers)
        resolved = []
        for entry in self.ami:
            server_id, sep, url = entry.partition("=")
            if not sep:
                server_id, url = self.server_id, entry
            try:
                resolved.append(AmiServer(id=server_id, url=url))
            except ValidationError as exc:
                # Name the server, never the URL: it may hold a secret by mistake.
                why = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"ami: server {server_id!r}: {why}") from None
        return resolved

    def ami_secret_for(self, server: AmiServer) -> str | None:
        """The secret for ``server``: its own, else the global one."""
        own = read_secret(server.secret, server.secret_file, f"AMI secret of {server.id}")
        if own is not None:
            return own
        return read_secret(self.ami_secret, self.ami_secret_file, "AMI secret")

    def resolved_instance_id(self) -> str:
        """``instance_id``, else the host name."""
        return self.instance_id or socket.gethostname()

    def stream_retention(self) -> StreamRetention | None:
        """The history stream's retention, or None when ``stream`` is off."""
        if not self.stream:
            return None
        return StreamRetention(max_age=self.stream_max_age, max_bytes=self.stream_max_bytes)

    def amqp_tls(self) -> TlsOptions | None:
        """TLS options for an ``amqps://`` broker (None for ``amqp://``), checked now.

        Raises:
            ValueError: the CA file cannot be read or parsed.
        """
        if not any(_is_tls(url) for url in self.amqp):
            return None
        ca_file = str(self.amqp_ca_file) if self.amqp_ca_file else None
        tls = TlsOptions(ca_file=ca_file, verify=self.amqp_tls_verify)
        try:
            tls.context()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"the amqp_ca_file is unusable: {exc}") from None
        return tls

    def amqp_url_with_password(self) -> str:
        """The first broker URL with the password filled in (for one-connection tools)."""
        return self.amqp_urls_with_password()[0]

    def amqp_urls_with_password(self) -> list[str]:
        """Every broker URL with the password from the password setting or file filled in."""
        password = read_secret(self.amqp_password, self.amqp_password_file, "AMQP password")
        if password is None:
            return list(self.amqp)
        return [_with_password(url, password) for url in self.amqp]


def _is_tls(url: str) -> bool:
    return url.startswith("amqps://")


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    # Both as typed: the user is already percent-encoded, and ``hostname`` would drop the
    # brackets of an IPv6 address.
    user = parts.username or "guest"
    host_port = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host_port}"))


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Build :class:`Settings` from flags (``overrides``), the environment and the TOML file.

    Raises:
        pydantic.ValidationError: a setting is wrong.
    """
    Settings.config_file = config_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        Settings.config_file = None
