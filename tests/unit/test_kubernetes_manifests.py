"""Structural checks of deploy/kubernetes (no cluster here: kubeconform is not packaged for Debian or PyPI)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.config import parse_config
from exporter.shard import Shard

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?")
UNITS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text) -> float:
    number, unit = QUANTITY.fullmatch(str(text)).groups()
    return float(number) * UNITS[unit]


def subset(small: dict, big: dict) -> bool:
    return bool(small) and all(big.get(k) == v for k, v in small.items())


@pytest.fixture(scope="module")
def documents() -> dict[tuple[str, str], dict]:
    """Every object the kustomization applies, by (kind, name)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"two {key} objects"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def objects(documents) -> dict[str, dict]:
    """The exporter's own objects (named captcha-exporter), by kind."""
    return {kind: doc for (kind, name), doc in documents.items() if name == "captcha-exporter"}


@pytest.fixture(scope="module")
def sts(objects):
    return objects["StatefulSet"]


@pytest.fixture(scope="module")
def container(sts):
    (only,) = sts["spec"]["template"]["spec"]["containers"]
    return only


@pytest.fixture(scope="module")
def config(objects):
    return parse_config(objects["ConfigMap"]["data"]["config.yaml"], "configmap.yaml")


def env_value(container, name):
    (entry,) = [e for e in container["env"] if e["name"] == name]
    return entry


def test_kinds_and_api_versions(objects):
    assert {kind: obj["apiVersion"] for kind, obj in objects.items()} == {
        "ConfigMap": "v1", "Service": "v1", "StatefulSet": "apps/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
        "PrometheusRule": "monitoring.coreos.com/v1"}


def test_namespace_agnostic(documents):
    assert all("namespace" not in obj["metadata"] for obj in documents.values())


def test_statefulset_selects_its_pods_and_names_the_headless_service(objects, sts):
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert subset(sts["spec"]["selector"]["matchLabels"], pod_labels)
    service = objects["Service"]
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert subset(service["spec"]["selector"], pod_labels)


def test_ports_agree_from_config_to_service_monitor(objects, container, config):
    (port,) = container["ports"]
    assert (config.web.listen_host, config.web.listen_port) == ("0.0.0.0", port["containerPort"])
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    (endpoint,) = objects["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"


def test_probes_hit_health_and_readiness_on_the_metrics_port(container):
    names = {p["name"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert {container[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe")} <= names


def test_service_monitor_selects_the_service(objects):
    monitor, service = objects["ServiceMonitor"], objects["Service"]
    assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # job="captcha-exporter", which the alert rules select
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "captcha-exporter"


def test_runs_as_non_root_without_privileges(sts, container):
    pod = sts["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_image_is_pinned(container):
    image = container["image"]
    name = image.rsplit("/", 1)[-1]  # a registry host may carry a :port
    tag = name.partition(":")[2]
    assert "@sha256:" in image or tag not in ("", "latest"), image


def test_every_replica_gets_its_own_shard_from_its_pod_name(sts, container):
    replicas = sts["spec"]["replicas"]
    assert env_value(container, "SHARDS")["value"] == str(replicas)
    assert env_value(container, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = container["args"]
    assert args[args.index("--shard.from-hostname") + 1] == "$(POD_NAME)"
    assert args[args.index("--shard.count") + 1] == "$(SHARDS)"
    pod_names = [f"{sts['metadata']['name']}-{ordinal}" for ordinal in range(replicas)]
    assert {Shard.from_hostname(name, replicas) for name in pod_names} == {Shard(i, replicas) for i in range(replicas)}


def test_config_is_valid_and_keeps_state_on_the_volume_claim(sts, container, config):
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_file = Path(container["args"][container["args"].index("--config") + 1])
    assert mounts[str(config_file.parent)] == "config"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    data_mount = next(path for path, name in mounts.items() if name == claim["metadata"]["name"])
    assert config.data_dir.is_relative_to(data_mount)
    assert Path(config.tor.data_directory).is_relative_to(data_mount)


def test_volumes_exist_and_shm_is_memory(sts, container):
    spec = sts["spec"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes.keys() | claims
    shm = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm]["emptyDir"]["medium"] == "Memory"
    assert volumes["config"]["configMap"]["name"] == "captcha-exporter"


def test_resources_fit_every_lane_browser(container, config):
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])
    browsers = config.schedule.concurrency * config.fetchers.chromium.memory_limit_bytes
    assert browsers < quantity(resources["limits"]["memory"])


def test_service_monitor_names_instances_by_pod_and_adds_no_per_pod_label(objects):
    (endpoint,) = objects["ServiceMonitor"]["spec"]["endpoints"]
    rules = endpoint["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in rules
    assert {"action": "labeldrop", "regex": "pod"} in rules  # the Operator adds `pod` by itself


def scrape_job() -> dict:
    (job,) = yaml.safe_load((DEPLOY / "prometheus-scrape.yaml").read_text())["scrape_configs"]
    return job


def test_plain_scrape_config_names_instances_by_pod_and_adds_no_per_pod_label():
    targets = {rule["target_label"]: rule["source_labels"] for rule in scrape_job()["relabel_configs"]
               if "target_label" in rule}
    assert targets["instance"] == ["__meta_kubernetes_pod_name"]
    per_pod = {"__meta_kubernetes_pod_name", "__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_uid"}
    assert not [label for label, sources in targets.items() if label != "instance" and per_pod & set(sources)]


def test_plain_scrape_config_keeps_the_service_endpoints(objects):
    job = scrape_job()
    assert job["job_name"] == "captcha-exporter"
    assert job["kubernetes_sd_configs"] == [{"role": "endpoints"}]
    service = objects["Service"]
    keeps = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"] if rule.get("action") == "keep"}
    assert keeps["__meta_kubernetes_service_label_app_kubernetes_io_name"] == \
        service["metadata"]["labels"]["app.kubernetes.io/name"]
    assert keeps["__meta_kubernetes_endpoint_port_name"] == service["spec"]["ports"][0]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_every_resource(documents):
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    docs = list(yaml.safe_load_all(rendered))
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(documents)
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "captcha-exporter" for d in docs)


def test_prometheus_rule_holds_the_shipped_rules(objects):
    shipped = [group for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
               for group in yaml.safe_load(path.read_text())["groups"]]
    groups = objects["PrometheusRule"]["spec"]["groups"]
    assert sorted(groups, key=lambda g: g["name"]) == sorted(shipped, key=lambda g: g["name"])


def test_dashboards_config_map_holds_the_shipped_dashboards_for_grafanas_sidecar(documents):
    config_map = documents[("ConfigMap", "captcha-exporter-dashboards")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {path.name: json.loads(path.read_text()) for path in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert {name: json.loads(text) for name, text in config_map["data"].items()} == shipped
    # kubectl apply (client side) keeps the whole object in an annotation of at most 256 KiB
    assert len((DEPLOY / "grafana-dashboards.yaml").read_bytes()) < 200 * 1024
