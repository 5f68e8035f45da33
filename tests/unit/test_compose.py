"""docker-compose.yml, Dockerfile and the Alertmanager config, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose 1.29) parses and interpolates
the compose file the way `docker compose up` would; the Dockerfile is checked
instruction by instruction.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH_PATHS = ("/-/healthy", "/api/health")


def compose_config(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in {"GRAFANA_ADMIN_PASSWORD", "LISTEN_ADDRESS", "CAPTCHA_EXPORTER_CONFIG"}}
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=ROOT,
                          env={**environment, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose_config(GRAFANA_ADMIN_PASSWORD="test-password")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_the_four_services(services):
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}


def test_images_are_pinned(services):
    for name, service in services.items():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), f"{name}: {service['image']}"
    assert services["exporter"]["build"]["context"] == str(ROOT)


def test_ports_bind_to_loopback_by_default(services):
    for name, service in services.items():
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_listen_address_can_be_overridden():
    result = compose_config(GRAFANA_ADMIN_PASSWORD="x", LISTEN_ADDRESS="127.0.0.2")
    assert result.returncode == 0, result.stderr
    ports = [p for s in yaml.safe_load(result.stdout)["services"].values() for p in s["ports"]]
    assert ports and all(str(p).startswith("127.0.0.2:") for p in ports)


def test_every_service_has_a_healthcheck_on_its_health_endpoint(services):
    for name, service in services.items():
        command = " ".join(service["healthcheck"]["test"])
        assert any(path in command for path in HEALTH_PATHS), f"{name}: {command}"


def test_data_lives_in_named_volumes(services):
    declared = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"])
    for name, service in services.items():
        named = {v.split(":")[0] for v in service["volumes"] if not v.startswith("/")}
        assert named and named <= declared, f"{name}: {service['volumes']}"


def test_bind_mounts_exist_in_the_repository(services):
    for name, service in services.items():
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name}: {source}"
                assert volume.endswith(":ro"), f"{name}: configuration mounts are read-only"


def test_prometheus_has_its_rules_the_lifecycle_api_and_exemplar_storage(services):
    prometheus = services["prometheus"]
    assert "--web.enable-lifecycle" in prometheus["command"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts[str(ROOT / "prometheus" / "rules")] == "/etc/prometheus/rules"
    assert config["rule_files"] == ["rules/*.yml"]  # relative to /etc/prometheus/prometheus.yml
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_grafana_admin_password_comes_from_the_environment(services):
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "test-password"
    result = compose_config()
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_alertmanager_config_is_valid():
    result = subprocess.run(["amtool", "check-config", "alertmanager/alertmanager.yml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 receivers" in result.stdout


def test_compose_exporter_config_is_valid(tmp_path):
    """docker/config.yaml passes check-config (the in-image Tor Browser path swapped for a local one)."""
    tor_browser = tmp_path / "tor-browser"
    tor_browser.mkdir()
    config = tmp_path / "config.yaml"
    text = (ROOT / "docker" / "config.yaml").read_text()
    assert "/opt/tor-browser" in text
    config.write_text(text.replace("/opt/tor-browser", str(tor_browser)))
    result = subprocess.run([sys.executable, "-m", "exporter", "check-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r'^\s*listen: "0\.0\.0\.0:10981"', text, flags=re.MULTILINE), "Prometheus scrapes it over the compose network"


# ------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, flags=re.MULTILINE)]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_base_images_are_pinned():
    args = dict(a.split("=", 1) for op, a in dockerfile_instructions() if op == "ARG" and "=" in a)
    for op, argument in dockerfile_instructions():
        if op == "FROM":
            image = argument.split()[0]
            image = args.get(image.strip("${}"), image)
            assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+[\w.-]*", image), image


def test_runs_as_a_non_root_user():
    users = [a for op, a in final_stage() if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_healthcheck_and_port():
    stage = dict(final_stage())
    assert "/-/healthy" in stage["HEALTHCHECK"]
    assert stage["EXPOSE"] == "10981"


def test_installs_tor_and_chromium():
    runs = " ".join(a for op, a in final_stage() if op == "RUN")
    for package in ("tor", "chromium", "chromium-driver"):
        assert re.search(rf"\s{re.escape(package)}\s", runs), package


def test_tor_browser_and_geckodriver_signatures_are_verified():
    text = " ".join(a for _, a in dockerfile_instructions())
    assert "TOR_BROWSER_KEY_FINGERPRINT=EF6E286DDA85EA2A4BA7DE684E2C6E8793298290" in text
    assert "GECKODRIVER_KEY_FINGERPRINT=14F26682D0916CDD81E37B6D61B7B526D98F0353" in text
    assert "gpgv --keyring" in text
    verified = re.findall(r'verify "\$\{(\w+)_KEY_URL\}" "\$\{(\w+)_KEY_FINGERPRINT\}" "\$\{archive\}"', text)
    assert sorted(verified) == [("GECKODRIVER", "GECKODRIVER"), ("TOR_BROWSER", "TOR_BROWSER")]
    assert 'archive="tor-browser-linux-x86_64-${TOR_BROWSER_VERSION}.tar.xz"' in text
    assert 'archive="geckodriver-v${GECKODRIVER_VERSION}-linux64.tar.gz"' in text

def test_copied_sources_exist():
    for op, argument in dockerfile_instructions():
        if op == "COPY" and not argument.startswith("--from"):
            *sources, _ = argument.split()
            for source in sources:
                assert (ROOT / source).exists(), source
