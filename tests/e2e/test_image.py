"""The shipped image, proven without Docker: built from Debian packages and the Dockerfile, run as a container.

tests/support/image.py builds the image's filesystem (debootstrap + the
Dockerfile's steps; the base comes from .ci/install, which has the network);
tests/support/container.py runs it as Docker and Kubernetes would: uid 10001,
PID 1 of its own PID namespace, read-only root, writable volume and /tmp, no
capabilities, no_new_privs, and the seccomp profile deploy/seccomp/chromium.json.
The exporter in it probes the test bed with Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.container import Container, start
from support.image import ROOT, Image, build

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(os.geteuid() != 0, reason="tests/run runs the tests as root"),
]

PROFILE = ROOT / "deploy/seccomp/chromium.json"
VOLUME = "/var/lib/captcha-exporter"
KILLS = 50


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    started = time.monotonic()
    built = build(tmp_path_factory.mktemp("image"))
    print(f"\nimage: the Dockerfile's steps after the base took {time.monotonic() - started:.0f} s; "
          f"skipped: {built.skipped}")
    assert built.user == "captcha:captcha" and built.entrypoint[0] == "tini"
    return built


@pytest.fixture
def run(image, testbed, tmp_path):
    """Start the image with an exporter config that probes the test bed; stop it afterwards."""
    started: list[Container] = []

    def run(port: int, sandbox: bool = True, user_namespaces: bool = True) -> Container:
        volume = tmp_path / f"volume-{port}"
        volume.mkdir()
        state = testbed.state()
        for name, source in (("cookie", state["client"]["cookie_file"]), ("ca.pem", state["edge"]["ca_file"]),
                             ("geoip.mmdb", state["geoip_db"])):
            shutil.copy(source, volume / name)
            os.chown(volume / name, 10001, 10001)
        config = tmp_path / f"config-{port}.yaml"
        config.write_text(yaml.safe_dump(exporter_config(state, port, sandbox)))
        container = start(image, mountpoint(tmp_path, port), volume, config, seccomp=PROFILE,
                          user_namespaces=user_namespaces)
        started.append(container)
        return container

    yield run
    for container in started:
        container.stop()


def mountpoint(tmp_path: Path, port: int) -> Path:
    path = tmp_path / f"root-{port}"
    path.mkdir()
    return path


def exporter_config(state: dict, port: int, sandbox: bool) -> dict:
    news = f"https://{urlsplit(state['edge']['sites']['news']).hostname}:{state['edge']['https_port']}/"
    return {
        "tor": {"mode": "connect", "control": f"127.0.0.1:{state['client']['control_port']}",
                "cookie_file": f"{VOLUME}/cookie"},
        "targets": [{"name": "news", "url": news, "fetchers": ["chromium"], "interval": "1s"}],
        "schedule": {"exits_per_run": len(state["exits"]), "concurrency": 1},
        "fetchers": {"chromium": {"ca_file": f"{VOLUME}/ca.pem", "binary": "/usr/bin/chromium",
                                  "driver": "/usr/bin/chromedriver", "timeout": "20s", "challenge_wait": "2s",
                                  "sandbox": sandbox}},
        "geoip": {"country_db": f"{VOLUME}/geoip.mmdb"},
        "baseline": {"resolve": {urlsplit(news).hostname: "127.0.0.1"}},
        "web": {"listen": f"127.0.0.1:{port}"},
        "data_dir": f"{VOLUME}/data",
    }


def samples(port: int) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sandbox_of(port: int, fetcher: str) -> set[str]:
    """The ``sandbox`` label of the fetcher's ``captcha_fetcher_info`` series."""
    return {dict(labels)["sandbox"] for (name, labels), value in samples(port).items()
            if name == "captcha_fetcher_info" and ("fetcher", fetcher) in labels and value == 1}


def chromium_probes(port: int) -> float:
    return sum(v for (name, labels), v in samples(port).items()
               if name == "captcha_probes_total" and ("fetcher", "chromium") in labels)


def wait_for(check, seconds: float, container: Container, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except (requests.ConnectionError, OSError):
            pass
        assert container.process.poll() is None, f"the container ended:\n{container.log.read_text()[-4000:]}"
        time.sleep(1)
    raise AssertionError(f"{what} within {seconds:.0f} s:\n{container.log.read_text()[-4000:]}")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def healthcheck(container: Container, image: Image, port: int) -> subprocess.CompletedProcess:
    """The Dockerfile's HEALTHCHECK, run inside the container as `docker exec` would."""
    command = [*image.healthcheck, "--address", f"127.0.0.1:{port}"]
    return subprocess.run(["nsenter", "-t", str(container.pid1()), "-m", "-p", "-r", "-w", "setpriv",
                           "--reuid=10001", "--regid=10001", "--clear-groups", "env", "-i",
                           "PATH=/usr/local/bin:/usr/bin:/bin", *command], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_image_probes_with_a_sandboxed_chromium_as_uid_10001_and_pid_1_and_leaves_no_zombie(image, run):
    port = 9971
    container = run(port)
    wait_for(lambda: chromium_probes(port) >= 2, 180, container, "no Chromium probe was answered")
    checked = healthcheck(container, image, port)
    assert checked.returncode == 0, checked.stderr
    assert sandbox_of(port, "chromium") == {"namespaces"}

    pid1 = container.pid1()
    processes = container.processes()
    assert processes[pid1].split()[:2] == ["tini", "--"]
    assert {status(pid)["Uid"].split()[0] for pid in processes} == {"10001"}
    assert all(status(pid)["NoNewPrivs"] == "1" for pid in processes)
    own = os.readlink(f"/proc/{pid1}/ns/user")  # in Chromium's own user namespaces, capabilities are its own
    assert all(status(pid)["CapEff"] == "0" * 16 for pid in processes if os.readlink(f"/proc/{pid}/ns/user") == own)
    root = next(line for line in Path(f"/proc/{pid1}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert "ro" in root.split()[5].split(","), root
    browser = next(pid for pid, command in processes.items()
                   if command.startswith("/usr/lib/chromium/chromium") and "--type=" not in command)
    renderers = wait_for(lambda: [pid for pid, command in container.processes().items()
                                  if "--type=renderer" in command], 30, container, "no renderer")
    for renderer in renderers:  # a user namespace of its own, and Chromium's seccomp filter on top of ours
        assert os.readlink(f"/proc/{renderer}/ns/user") != os.readlink(f"/proc/{browser}/ns/user")
        assert int(status(renderer)["Seccomp_filters"]) > int(status(browser)["Seccomp_filters"])
    volume = container.log.with_suffix("")
    assert oct((volume / "data/state.db").stat().st_mode & 0o777) == "0o600"

    killed = kill_browsers(container, KILLS)
    before = chromium_probes(port)
    wait_for(lambda: chromium_probes(port) > before, 120, container, "no Chromium probe after the kills")
    # a process stays a zombie until its parent reaps it: tini for orphans, a live Chromium for its own
    # children when it notices (a killed zygote, when the browser next needs it); what is left after the
    # exporter has probed on for a while is a leak
    deadline, zombies = time.monotonic() + 90, lingering_zombies(container)
    while zombies and time.monotonic() < deadline:
        time.sleep(5)
        zombies = lingering_zombies(container)
    print(f"\nkilled {KILLS} browser processes ({json.dumps(killed)}); zombies left: {len(zombies)}")
    assert zombies == []
    assert container.stop() == 0, container.log.read_text()[-3000:]


def kill_browsers(container: Container, count: int) -> dict[str, int]:
    """SIGKILL ``count`` Chromium processes of every kind in turn (main, zygote, renderer, GPU, utility,
    crashpad), waiting for the exporter to start a browser again when none is left."""
    kinds = ("main", "zygote", "renderer", "gpu-process", "utility", "crashpad")
    killed: dict[str, int] = {}
    for turn in range(count):
        def browser_processes():
            found = {}
            for pid, command in container.processes().items():
                if "chrome_crashpad_handler" in command:
                    found.setdefault("crashpad", pid)
                elif command.startswith("/usr/lib/chromium/chromium"):
                    kind = next((a[7:] for a in command.split() if a.startswith("--type=")), "main")
                    found.setdefault(kind, pid)
            return found

        found = wait_for(browser_processes, 60, container, "no browser running")
        kind = next((k for k in kinds[turn % len(kinds):] + kinds if k in found), next(iter(found)))
        try:
            os.kill(found[kind], 9)
            killed[kind] = killed.get(kind, 0) + 1
        except ProcessLookupError:
            pass
        time.sleep(0.5)
    return killed


def lingering_zombies(container: Container) -> list[str]:
    """Processes of the container that are zombies now and still two seconds later."""
    def zombies():
        found = set()
        for pid, command in container.processes().items():
            try:
                facts = status(pid)
            except OSError:  # gone meanwhile
                continue
            if facts["State"].startswith("Z"):
                try:
                    named = Path(f"/proc/{facts['PPid']}/comm").read_text().strip()
                except OSError:  # outside the container's PID namespace, or gone
                    named = "?"
                found.add((pid, f"{command or facts['Name']} (child of {facts['PPid']} {named})"))
        return found

    first = zombies()
    time.sleep(2)
    return sorted(f"{pid} {name}" for pid, name in first & zombies())


def test_without_user_namespaces_the_image_refuses_in_one_line(image, run):
    container = run(9972, user_namespaces=False)
    assert container.process.wait(120) == 1
    log = container.log.read_text()
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: Chromium's sandbox cannot run here: no user namespaces")
    assert "Traceback" not in log


def test_without_user_namespaces_sandbox_false_runs_and_says_so(image, run):
    port = 9973
    container = run(port, sandbox=False, user_namespaces=False)
    wait_for(lambda: chromium_probes(port) >= 1, 180, container, "no Chromium probe was answered")
    assert sandbox_of(port, "chromium") == {"off"}
    assert any(json.loads(line).get("msg", "").startswith("Chromium runs without its sandbox")
               for line in container.log.read_text().splitlines() if line.startswith("{"))

