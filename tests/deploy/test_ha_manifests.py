"""The hot-standby pair's Kubernetes manifests: valid, two members, a volume each."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy import yaml_documents
from tests.deploy.test_manifests import KUBERNETES_VERSION

HA = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "ha"
MANIFESTS = sorted(p for p in HA.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_ha_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for doc in yaml_documents(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_pair_is_two_members_with_a_journal_volume_each_and_a_budget() -> None:
    (sts,) = yaml_documents(HA / "statefulset.yaml")
    (pdb,) = yaml_documents(HA / "pdb.yaml")
    spec = sts["spec"]
    assert sts["kind"] == "StatefulSet"
    assert spec["replicas"] == 2
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["journal"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["run", "--ha"]
    env = {e["name"] for e in container["env"]}
    assert "AMI_BRIDGE_INSTANCE_ID" in env
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == spec["selector"]
