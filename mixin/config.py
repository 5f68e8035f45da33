"""The mixin's one config: where things are, what counts as bad, and what to call a page.

It plays the part of a jsonnet mixin's ``config.libsonnet``: every rule and
dashboard reads its selectors, URLs, thresholds and severities from here, and
a team changes them with a small YAML file of overrides instead of forking the
generated files::

    job_selector: 'job="captcha-probes"'
    grafana_url: https://grafana.example.net
    thresholds: {not_probed_intervals: 4}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Severities:
    """The ``severity`` label value of each kind of alert (monitoring-mixins' three)."""

    page: str = "critical"  # wake someone: nothing is being measured
    ticket: str = "warning"  # look at it in working hours
    info: str = "info"  # worth knowing, not acting on


@dataclass(frozen=True)
class Thresholds:
    """When alerts fire.  Durations are Prometheus durations (``20m``)."""

    # CAPTCHA findings, judged over the last hour and on at least min_probes probes
    min_probes: int = 5
    challenge_spike_ratio: float = 0.2  # ... and above challenge_spike_factor × the target's 1-day ratio
    challenge_spike_factor: float = 2.0
    challenge_spike_for: str = "20m"
    blocked_ratio: float = 0.5
    blocked_for: str = "30m"
    page_modified_ratio: float = 0.25
    page_modified_for: str = "30m"
    probe_error_ratio: float = 0.5
    probe_error_for: str = "30m"
    exit_coverage_ratio: float = 0.5
    exit_coverage_for: str = "1h"
    # the exporter itself
    exporter_down_for: str = "20m"
    tor_down_for: str = "15m"
    not_probed_intervals: float = 3.0  # no answered probe for this many of the target's own intervals ...
    not_probed_min_seconds: float = 900.0  # ... and for at least this long
    not_probed_for: str = "10m"
    backlog_rounds: float = 2.0  # the oldest attempt is this many times older than the plan needs
    backlog_min_seconds: float = 1800.0
    backlog_for: str = "30m"
    browser_crashes: int = 5  # crashes of one fetcher's browsers ...
    browser_crash_window: str = "30m"  # ... within this window
    browser_crash_for: str = "10m"
    consensus_age_seconds: float = 3 * 3600.0  # a consensus is valid for 3 hours after valid-after
    consensus_stale_for: str = "20m"
    reload_failed_for: str = "20m"


@dataclass(frozen=True)
class Config:
    # selects the exporter's series in every rule and dashboard query
    job_selector: str = 'job="captcha-exporter"'
    # links in alerts: dashboard_url = grafana_url + /d/<uid>; runbook_url = runbook_url + #<alert name lower case>
    grafana_url: str = "http://127.0.0.1:3000"
    runbook_url: str = "https://github.com/captcha-exporter/captcha-exporter/blob/main/docs/runbooks.md"
    # where an operator's browser reaches the exporter's pages (evidence links on the dashboards)
    exporter_url: str = "http://127.0.0.1:10981"
    dashboard_refresh: str = "5m"
    severities: Severities = field(default_factory=Severities)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def dashboard_url(self, uid: str) -> str:
        return f"{self.grafana_url.rstrip('/')}/d/{uid}"

    def runbook(self, alert: str) -> str:
        return f"{self.runbook_url}#{alert.lower()}"

    def selector(self, *matchers: str) -> str:
        """``{job_selector,matcher,…}``, the braces of a series selector."""
        return "{" + ",".join((self.job_selector, *matchers)) + "}"


DEFAULT = Config()


class ConfigError(ValueError):
    """An override file that cannot be used; the message names the key."""


def load(path: str | Path | None) -> Config:
    """The default config with the overrides of a YAML file (None: the default itself)."""
    if path is None:
        return DEFAULT
    overrides = yaml.safe_load(Path(path).read_text()) or {}
    return override(DEFAULT, overrides, str(path))


def override(base, overrides: dict, where: str):
    """``base`` (a dataclass) with the values of ``overrides`` put in, nested dataclasses merged key by key."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: expected a mapping, got {overrides!r}")
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(fields)})")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            changes[key] = override(current, value, f"{where}: {key}")
        elif not isinstance(value, type(current)) and not (isinstance(current, float) and isinstance(value, int)):
            raise ConfigError(f"{where}: {key} must be a {type(current).__name__}, got {value!r}")
        else:
            changes[key] = type(current)(value)
    return dataclasses.replace(base, **changes)
