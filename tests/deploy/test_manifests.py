"""The deployment files parse, validate, and agree with the code they deploy.

Kubernetes objects are validated offline against the API schemas that
``kubernetes-validate`` ships. Everything that must match the code (exchange names,
ports, probe paths, ``AMI_BRIDGE_*`` variable names, the journal directory, the
subcommands run) is compared with the constants in ``bridge`` rather than with copies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import promql_parser
import pytest

from bridge import __version__
from bridge.cli import simulate
from bridge.cli.main import COMMANDS
from bridge.consumer import topic_matches
from bridge.publish import topology
from bridge.publish.routing import BridgeStatus, Router, event_class
from bridge.settings import (
    DEFAULT_EXCHANGE,
    DEFAULT_METRICS_PORT,
    ENV_PREFIX,
    Settings,
)

from . import (
    DEPLOY,
    DOCKERFILE,
    KUBERNETES,
    REPO,
    compose,
    definitions,
    dockerfile_env,
    dockerfile_user,
    exported_metric_names,
    kubernetes_objects,
    metrics_in,
    yaml_documents,
)

KUBERNETES_VERSION = "1.30"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
JOURNAL_ENV = f"{ENV_PREFIX}JOURNAL_DIR"
PORT_ENV = f"{ENV_PREFIX}METRICS_PORT"
CATALOG = json.loads((REPO / "bridge" / "events" / "catalog.json").read_text(encoding="utf-8"))

DATA_FILES = sorted(
    p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json") and p.is_file()
)
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def _container() -> dict[str, Any]:
    (container,) = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _pod_spec() -> dict[str, Any]:
    spec = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def _deployment_env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container()["env"]}


def _interpolated(value: str) -> str:
    """A compose value with ``${VAR:-default}`` resolved to its default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service]["environment"]
    return {key: _interpolated(str(value)) for key, value in env.items()}


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    match = re.fullmatch(r"(\d+)([KMGT]i)", quantity)
    assert match, f"unexpected quantity {quantity!r}"
    return int(match[1]) * units[match[2]]


# -- every file parses ----------------------------------------------------------------


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        with path.open(encoding="utf-8") as file:
            assert json.load(file)
    else:
        assert yaml_documents(path)


def test_the_expected_files_are_there() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in DATA_FILES}
    assert {
        "docker-compose.yml",
        "rabbitmq/definitions.json",
        "prometheus/alerts.yml",
        "kubernetes/kustomization.yaml",
        "kubernetes/deployment.yaml",
        "kubernetes/secret.example.yaml",
    } <= names


# -- Kubernetes -----------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for doc in yaml_documents(path):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {'.'.join(map(str, e.path))}: {e.message}")


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    listed = kustomization["resources"]
    assert "secret.example.yaml" not in listed
    assert sorted(listed) == sorted(p.name for p in MANIFESTS if p.name != "secret.example.yaml")


def test_image_tag_is_this_version() -> None:
    (kustomization,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    (image,) = kustomization["images"]
    assert image == {"name": "ami-bridge", "newTag": __version__}
    assert _container()["image"] == f"ami-bridge:{__version__}"


def test_one_bridge_per_set_of_pbxs() -> None:
    spec = kubernetes_objects()["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert _container()["args"] == ["run"]
    assert "run" in COMMANDS


def test_probes_and_ports() -> None:
    container = _container()
    assert container["ports"] == [
        {"name": "metrics", "containerPort": DEFAULT_METRICS_PORT, "protocol": "TCP"}
    ]
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"] == {"path": "/healthz", "port": "metrics"}
    assert probes["readinessProbe"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert _deployment_env()[PORT_ENV] == str(DEFAULT_METRICS_PORT)


def test_metrics_service_selects_the_pod_and_is_scraped() -> None:
    objects = kubernetes_objects()
    service = objects["Service"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == DEFAULT_METRICS_PORT
    assert port["targetPort"] == "metrics"
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULT_METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        service["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        objects["Deployment"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()


def test_runs_locked_down_as_the_image_user() -> None:
    uid, gid = dockerfile_user()
    pod = _pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container()["securityContext"]
    assert container == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    resources = _container()["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= resources["requests"].keys() & resources["limits"].keys()


def test_secrets_are_files_from_the_secret_never_literals() -> None:
    objects = kubernetes_objects()
    example = objects["Secret"]
    (secret_volume,) = [v for v in _pod_spec()["volumes"] if "secret" in v]
    assert secret_volume["secret"]["secretName"] == example["metadata"]["name"]
    items = {item["path"]: item["key"] for item in secret_volume["secret"]["items"]}
    assert set(items.values()) == set(example["stringData"])
    (mount,) = [m for m in _container()["volumeMounts"] if m["name"] == secret_volume["name"]]
    assert mount["readOnly"] is True
    secret_settings = {"ami_secret", "amqp_password"}
    env = _deployment_env()
    for name in secret_settings:
        assert f"{ENV_PREFIX}{name.upper()}" not in env
        assert f"{ENV_PREFIX}{name.upper()}" not in objects["ConfigMap"]["data"]
        path = Path(env[f"{ENV_PREFIX}{name.upper()}_FILE"])
        assert str(path.parent) == mount["mountPath"]
        assert path.name in items
    assert all("valueFrom" not in item for item in _container()["env"])


def test_configmap_feeds_the_environment_and_makes_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configmap = kubernetes_objects()["ConfigMap"]
    assert _container()["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    settings = _settings_from({**configmap["data"], **_deployment_env()}, monkeypatch)
    assert settings.exchange == DEFAULT_EXCHANGE
    assert settings.metrics_port == DEFAULT_METRICS_PORT
    assert [server.id for server in settings.resolved_servers()]


def test_journal_volume_holds_the_journal_of_every_pbx(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = kubernetes_objects()
    settings = _settings_from({**objects["ConfigMap"]["data"], **_deployment_env()}, monkeypatch)
    (journal,) = [v for v in _pod_spec()["volumes"] if "persistentVolumeClaim" in v]
    pvc = objects["PersistentVolumeClaim"]
    assert journal["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = _bytes(pvc["spec"]["resources"]["requests"]["storage"])
    assert size > settings.journal_max_bytes * len(settings.resolved_servers())


def test_the_pod_disruption_budget_keeps_the_bridge() -> None:
    assert kubernetes_objects()["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 0


# -- names and paths that must agree everywhere ---------------------------------------


def _deploy_texts() -> dict[str, str]:
    paths = [DOCKERFILE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in paths}


def test_every_ami_bridge_variable_named_is_a_real_setting() -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    known |= {CONFIG_ENV, simulate.SECRET_ENV}
    seen = set()
    for where, text in _deploy_texts().items():
        for name in re.findall(r"\bAMI_BRIDGE_[A-Z0-9_]*[A-Z0-9]\b", text):
            assert name in known, f"{where} names {name}, which no setting reads"
            seen.add(name)
    assert {JOURNAL_ENV, PORT_ENV, f"{ENV_PREFIX}AMI_SECRET_FILE"} <= seen


def test_journal_directory_agrees_everywhere() -> None:
    journal_dir = dockerfile_env()[JOURNAL_ENV]
    # Compose: the named volume is mounted where the image declares it.
    bridge = compose()["services"]["ami-bridge"]
    assert _compose_env("ami-bridge")[JOURNAL_ENV] == journal_dir
    assert f"journal:{journal_dir}" in bridge["volumes"]
    # Kubernetes: the PVC is mounted where the environment points.
    assert _deployment_env()[JOURNAL_ENV] == journal_dir
    (journal,) = [v for v in _pod_spec()["volumes"] if "persistentVolumeClaim" in v]
    (mount,) = [m for m in _container()["volumeMounts"] if m["name"] == journal["name"]]
    assert mount["mountPath"] == journal_dir


def test_exchange_names_agree_with_the_code() -> None:
    assert topology.DEFAULT_EXCHANGE == DEFAULT_EXCHANGE
    assert _compose_env("ami-bridge")[f"{ENV_PREFIX}EXCHANGE"] == DEFAULT_EXCHANGE
    assert kubernetes_objects()["ConfigMap"]["data"][f"{ENV_PREFIX}EXCHANGE"] == DEFAULT_EXCHANGE


# -- RabbitMQ definitions -------------------------------------------------------------


def _by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in definitions()[kind]}


def test_definitions_declare_the_bridge_topology_exactly_as_the_bridge_does() -> None:
    # The bridge declares these itself on every connect; other arguments would make the
    # broker refuse its declaration with PRECONDITION_FAILED.
    unrouted = topology.unrouted_name(DEFAULT_EXCHANGE)
    exchanges = _by_name("exchanges")
    assert exchanges[DEFAULT_EXCHANGE] == {
        "name": DEFAULT_EXCHANGE,
        "vhost": "/",
        "type": "topic",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {"alternate-exchange": unrouted},
    }
    assert exchanges[unrouted]["type"] == "fanout"
    assert exchanges[unrouted]["durable"] is True
    assert exchanges[unrouted]["arguments"] == {}
    queue = _by_name("queues")[unrouted]
    arguments = topology.unrouted_queue_arguments("classic", Settings().unrouted_max_length)
    assert (queue["durable"], queue["auto_delete"], queue["arguments"]) == (True, False, arguments)
    assert {
        "source": unrouted,
        "vhost": "/",
        "destination": unrouted,
        "destination_type": "queue",
        "routing_key": "",
        "arguments": {},
    } in definitions()["bindings"]


def test_definitions_declare_the_history_stream_as_the_bridge_does() -> None:
    name = topology.stream_name(DEFAULT_EXCHANGE)
    retention = Settings().stream_retention()
    assert retention is not None
    queue = _by_name("queues")[name]
    assert (queue["durable"], queue["auto_delete"]) == (True, False)
    assert queue["arguments"] == retention.arguments()
    assert {
        "source": DEFAULT_EXCHANGE,
        "vhost": "/",
        "destination": name,
        "destination_type": "queue",
        "routing_key": "#",
        "arguments": {},
    } in definitions()["bindings"]


def test_consumer_queues_are_quorum_queues_that_dead_letter() -> None:
    exchanges = _by_name("exchanges")
    bound = {b["destination"] for b in definitions()["bindings"] if b["source"] == DEFAULT_EXCHANGE}
    bound.discard(topology.stream_name(DEFAULT_EXCHANGE))  # the history, not a work queue
    assert {"calls", "registrations"} <= bound
    for name in bound:
        arguments = _by_name("queues")[name]["arguments"]
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-delivery-limit"] > 0
        dlx = arguments["x-dead-letter-exchange"]
        assert dlx in exchanges
        assert any(b["source"] == dlx for b in definitions()["bindings"])


def test_every_binding_joins_declared_entities() -> None:
    vhosts = {v["name"] for v in definitions()["vhosts"]}
    exchanges, queues = _by_name("exchanges"), _by_name("queues")
    for item in (*exchanges.values(), *queues.values(), *definitions()["bindings"]):
        assert item["vhost"] in vhosts
    for binding in definitions()["bindings"]:
        assert binding["source"] in exchanges
        assert binding["destination_type"] == "queue"
        assert binding["destination"] in queues


def _event_key(event: str, server: str = "pbx1") -> str:
    """The routing key the bridge gives ``event``, its class taken from the catalog."""
    return Router(server).event_key(event, event_class(CATALOG[event]["classes"]))


@pytest.mark.parametrize(
    ("key", "queue"),
    [
        (_event_key("Newchannel"), "calls"),
        (_event_key("Hangup", server="pbx-2"), "calls"),
        (_event_key("PeerStatus"), "registrations"),
        (_event_key("ContactStatus"), "registrations"),
        (_event_key("Registry"), "registrations"),
        (Router("pbx2").bridge_key(BridgeStatus.GAP), "bridge-status"),
    ],
)
def test_bindings_catch_the_keys_the_bridge_publishes(key: str, queue: str) -> None:
    routed_to = {
        b["destination"]
        for b in definitions()["bindings"]
        if b["source"] == DEFAULT_EXCHANGE and topic_matches(b["routing_key"], key)
    }
    # The history stream is bound with '#': it keeps every key, besides the work queue.
    assert routed_to == {queue, topology.stream_name(DEFAULT_EXCHANGE)}, key


def test_invalid_records_reach_no_example_queue() -> None:
    key = Router("pbx1").invalid_key("Newchannel")
    assert not any(
        topic_matches(b["routing_key"], key)
        for b in definitions()["bindings"]
        if b["source"] == DEFAULT_EXCHANGE
        and b["destination"] != topology.stream_name(DEFAULT_EXCHANGE)
    )


def test_development_user_logs_in_with_the_example_password_and_owns_the_topology() -> None:
    (user,) = definitions()["users"]
    password = (DEPLOY / "secrets" / "amqp_password.example").read_text().rstrip("\n")
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    decoded = base64.b64decode(user["password_hash"])
    salt, digest = decoded[:4], decoded[4:]
    assert hashlib.sha256(salt + password.encode()).digest() == digest
    (permission,) = definitions()["permissions"]
    assert permission["user"] == user["name"]
    actions = Settings().rpc_exchange
    for names in (
        DEFAULT_EXCHANGE,
        topology.unrouted_name(DEFAULT_EXCHANGE),
        "amq.gen-x",
        actions,
        topology.unrouted_name(actions),
        f"{actions}.bridge-0123456789ab",
    ):
        for access in ("configure", "write", "read"):
            assert re.match(permission[access], names), (access, names)
    # Replies to action requests go through the default exchange.
    assert re.match(permission["write"], "amq.default")
    amqp = urlsplit(_compose_env("ami-bridge")[f"{ENV_PREFIX}AMQP"])
    assert amqp.username == user["name"]


def test_rabbitmq_loads_the_mounted_definitions() -> None:
    rabbitmq = compose()["services"]["rabbitmq"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in rabbitmq["volumes"] if v.startswith("./"))
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    (loaded,) = re.findall(r"^load_definitions\s*=\s*(\S+)$", conf, re.MULTILINE)
    assert mounts["./rabbitmq/definitions.json"] == loaded
    assert mounts["./rabbitmq/rabbitmq.conf"].startswith("/etc/rabbitmq/conf.d/")


# -- Docker Compose -------------------------------------------------------------------


def test_compose_bridge_is_read_only_healthy_and_waits_for_the_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    bridge = services["ami-bridge"]
    assert bridge["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / bridge["build"]["context"] / bridge["build"]["dockerfile"]).is_file()
    assert bridge["read_only"] is True
    assert bridge["command"] == ["run"]
    assert bridge["healthcheck"]["test"] == ["CMD", "ami-bridge", "healthcheck"]
    assert bridge["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}}
    assert "healthcheck" in services["rabbitmq"]
    assert f"127.0.0.1:{DEFAULT_METRICS_PORT}:{DEFAULT_METRICS_PORT}" in bridge["ports"]
    settings = _settings_from(_compose_env("ami-bridge"), monkeypatch)
    assert settings.metrics_port == DEFAULT_METRICS_PORT


def test_compose_secrets_are_files_with_committed_examples() -> None:
    doc = compose()
    for service in ("ami-bridge", "simulator"):
        for name in doc["services"][service]["secrets"]:
            source = DEPLOY / doc["secrets"][name]["file"]
            assert source.with_name(source.name + ".example").is_file(), source
    env = _compose_env("ami-bridge")
    for setting in ("AMI_SECRET_FILE", "AMQP_PASSWORD_FILE"):
        path = Path(env[ENV_PREFIX + setting])
        assert path.parent == Path("/run/secrets")
        assert path.name in doc["services"]["ami-bridge"]["secrets"]


def test_compose_simulator_is_the_default_pbx_under_its_profile() -> None:
    simulator = compose()["services"]["simulator"]
    assert simulator["profiles"] == ["simulator"]
    (script,) = simulator["command"]
    words = shlex.split(script.replace("$$", "$"))
    at = words.index("ami-bridge")
    assert words[at + 1] == "simulate"
    assert "simulate" in COMMANDS
    assert words[at + 2 :][:4] == ["--host", "0.0.0.0", "--port", "5038"]
    assert words[0].startswith(f"{simulate.SECRET_ENV}=")
    assert "/run/secrets/ami_secret" in words[0]
    # The bridge's default AMI target is this service.
    (target,) = _compose_env("ami-bridge")[f"{ENV_PREFIX}AMI"].split(",")
    url = urlsplit(target.partition("=")[2])
    assert (url.hostname, url.port) == ("simulator", 5038)


# -- Prometheus alerts ----------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    (doc,) = yaml_documents(DEPLOY / "prometheus" / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_alert_rule_is_valid_promql_on_exported_metrics(rule: dict[str, Any]) -> None:
    used = metrics_in(rule["expr"])
    assert used
    assert used <= exported_metric_names(), used - exported_metric_names()
    if "for" in rule:
        promql_parser.parse_duration(rule["for"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]


def test_the_alerts_cover_the_failure_modes() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    exprs = {name: " ".join(rule["expr"].split()) for name, rule in rules.items()}
    assert exprs["AmiBridgeAmiDisconnected"] == "ami_bridge_ami_connected == 0"
    assert rules["AmiBridgeAmiDisconnected"]["for"] == "1m"
    assert exprs["AmiBridgeJournalGrowing"].startswith("deriv(ami_bridge_journal_depth[10m]) > 0")
    assert rules["AmiBridgeJournalGrowing"]["for"] == "10m"
    assert exprs["AmiBridgeJournalOld"] == "ami_bridge_journal_oldest_age_seconds > 300"
    assert metrics_in(exprs["AmiBridgeInvalidEvents"]) == {
        "ami_bridge_events_invalid_total",
        "ami_bridge_events_read_total",
    }
    assert exprs["AmiBridgeInvalidEvents"].endswith("> 0.01")
    assert rules["AmiBridgeInvalidEvents"]["for"] == "10m"
    assert exprs["AmiBridgePublishNacked"] == "increase(ami_bridge_publish_nacked_total[5m]) > 0"
