"""The Grafana dashboard and the ServiceMonitor agree with what the bridge exports.

Every PromQL expression of the dashboard (its panels' queries and its variables') must
parse, and every metric it names must be one the bridge's registry exports, so a
renamed metric breaks this test rather than a panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from . import (
    DEPLOY,
    KUBERNETES,
    exported_metric_names,
    kubernetes_objects,
    metrics_in,
    yaml_documents,
)

DASHBOARD = DEPLOY / "grafana" / "ami-bridge.json"
#: What Grafana puts in place of its variables before it sends a query.
_DURATIONS = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*\w+\)$")


def _dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as file:
        doc = json.load(file)
    assert isinstance(doc, dict)
    return doc


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _as_sent(expr: str) -> str:
    """``expr`` with the dashboard's variables replaced as Grafana would."""
    return _VARIABLE.sub(lambda m: _DURATIONS.get(m[1], ".*"), expr)


def _expressions() -> list[str]:
    doc = _dashboard()
    exprs = [
        target["expr"] for panel in _panels(doc["panels"]) for target in panel.get("targets", [])
    ]
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["definition"])
            assert match, variable["definition"]
            exprs.append(match[1])
    return exprs


@pytest.mark.parametrize("expr", _expressions())
def test_each_expression_parses_and_names_exported_metrics(expr: str) -> None:
    used = metrics_in(_as_sent(expr))
    assert used, expr
    assert used <= exported_metric_names(), used - exported_metric_names()


def test_the_dashboard_shows_what_an_operator_looks_for() -> None:
    used = set().union(*(metrics_in(_as_sent(expr)) for expr in _expressions()))
    assert {
        "ami_bridge_events_read_total",
        "ami_bridge_events_published_total",
        "ami_bridge_events_invalid_total",
        "ami_bridge_journal_depth",
        "ami_bridge_journal_oldest_age_seconds",
        "ami_bridge_journal_bytes",
        "ami_bridge_publish_latency_seconds_bucket",
        "ami_bridge_ami_reconnects_total",
        "ami_bridge_ami_connected",
        "ami_bridge_broker_connected",
        "ami_bridge_broker_blocked",
    } <= used
    exprs = " ".join(_expressions())
    # Events are counted by server as they come off the socket, and by class once rendered.
    assert "sum by (server) (rate(ami_bridge_events_read_total" in exprs
    assert "sum by (server, class) (rate(ami_bridge_events_published_total" in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in exprs


def test_every_panel_uses_the_datasource_variable_and_has_its_own_id() -> None:
    doc = _dashboard()
    panels = list(_panels(doc["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    names = [variable["name"] for variable in doc["templating"]["list"]]
    assert names == ["datasource", "job", "server"]


# -- the Prometheus Operator's ServiceMonitor --------------------------------------------

OPERATOR = KUBERNETES / "prometheus-operator"


def test_the_service_monitor_scrapes_the_metrics_service() -> None:
    (monitor,) = yaml_documents(OPERATOR / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    service = kubernetes_objects()["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == service["metadata"]["annotations"]["prometheus.io/path"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}


def test_the_operator_kustomization_adds_the_monitor_to_the_base() -> None:
    (kustomization,) = yaml_documents(OPERATOR / "kustomization.yaml")
    assert kustomization["resources"] == ["..", "servicemonitor.yaml"]
