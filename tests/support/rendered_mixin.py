"""The mixin rendered with a team's config, and the promtool tests retargeted to it (test helpers).

The shipped files are the mixin's output with the default config; a team's
files come from ``python -m mixin --config FILE --out DIR``.  Every rule and
dashboard check runs on both, so a non-default job name, Grafana and runbook
address cannot break a query or a link.
"""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CUSTOM_CONFIG = ROOT / "mixin" / "example-config.yaml"
DEFAULTS = {"job": "captcha-exporter", "grafana_url": "http://127.0.0.1:3000",
            "runbook_url": "https://github.com/captcha-exporter/captcha-exporter/blob/main/docs/runbooks.md"}


def custom() -> dict[str, str]:
    """The job name and addresses of the custom config (its job selector is ``job="NAME"``)."""
    config = yaml.safe_load(CUSTOM_CONFIG.read_text())
    job = config["job_selector"].removeprefix('job="').removesuffix('"')
    return {"job": job, "grafana_url": config["grafana_url"].rstrip("/"), "runbook_url": config["runbook_url"]}


def render(out: Path, config: Path | None = CUSTOM_CONFIG) -> Path:
    """Write the mixin's files under ``out`` (a copy of the shipped prometheus/ tests included); return ``out``."""
    command = [sys.executable, "-m", "mixin", "--out", str(out)] + (["--config", str(config)] if config else [])
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    tests = out / "prometheus" / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    for shipped in sorted((ROOT / "prometheus" / "tests").glob("*.yml")):
        (tests / shipped.name).write_text(retarget(shipped.read_text(), custom() if config else DEFAULTS))
    return out


def module(name: str):
    """A module of the mixin (``mixin.dashboards``), which is not an installed package."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


@functools.cache
def custom_root() -> Path:
    """The custom config's files, rendered once per process into a directory that lives as long."""
    directory = tempfile.TemporaryDirectory(prefix="captcha-mixin-")
    _kept.append(directory)
    return render(Path(directory.name))


_kept: list[tempfile.TemporaryDirectory] = []


def retarget(text: str, to: dict[str, str]) -> str:
    """A promtool test file written for the default config, with its job and addresses replaced."""
    replacements = [
        (f'job="{DEFAULTS["job"]}"', f'job="{to["job"]}"'),
        (f'job: {DEFAULTS["job"]}', f'job: {to["job"]}'),
        (f'(job {DEFAULTS["job"]})', f'(job {to["job"]})'),
        (f'job {DEFAULTS["job"]} has', f'job {to["job"]} has'),
        (DEFAULTS["grafana_url"] + "/d/", to["grafana_url"] + "/d/"),
        (DEFAULTS["runbook_url"] + "#", to["runbook_url"] + "#"),
    ]
    for old, new in replacements:
        text = text.replace(old, new)
    return text
