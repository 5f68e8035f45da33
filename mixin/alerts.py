"""Alerts: one for each way the measurements can go wrong, and for what they find.

Names are CamelCase with the prefix ``Captcha``. Each alert carries
``severity``, a static ``summary``, a templated ``description``, a
``runbook_url`` (docs/runbooks.md, the anchor is the alert name in lower case)
and a ``dashboard_url``.

Two kinds:

- findings about the sites (challenge spike, blocks, modified pages, probe
  errors, coverage), judged over an hour on at least ``min_probes`` probes and
  aggregated across replicas (the recording rules);
- the exporter's own health, judged per instance so one stuck replica of
  several cannot hide behind healthy ones, and against each target's own
  interval (``captcha_target_interval_seconds``), so an hourly target is not
  late after 30 minutes.

Alerts about probes need tor: while an instance's tor is down, only
CaptchaTorDown speaks for it.
"""

from __future__ import annotations

from mixin.config import Config
from mixin.dashboards import UID_HEALTH, UID_TARGET


def prometheus_alerts(config: Config) -> dict:
    s, t, severity = config.selector, config.thresholds, config.severities
    target_dashboard = config.dashboard_url(UID_TARGET) + "?var-target={{ $labels.target }}"
    health_dashboard = config.dashboard_url(UID_HEALTH)
    tor_up = f"and on (job, instance) captcha_tor_up{s()} == 1"
    crashes = s('reason=~"crashed|launch_failed"')

    def alert(name: str, expr: str, duration: str, level: str, summary: str, description: str,
              dashboard: str) -> dict:
        return {"alert": name, "expr": expr, "for": duration, "labels": {"severity": level},
                "annotations": {"summary": summary, "description": description,
                                "runbook_url": config.runbook(name), "dashboard_url": dashboard}}

    findings = [
        alert("CaptchaChallengeRateSpike",
              f"target_fetcher:captcha_challenges_per_probes:ratio_rate1h > {t.challenge_spike_ratio}\n"
              "and target_fetcher:captcha_challenges_per_probes:ratio_rate1h\n"
              f"  > {t.challenge_spike_factor:g} * target_fetcher:captcha_challenges_per_probes:ratio_rate1d\n"
              f"and target_fetcher:captcha_probes:increase1h >= {t.min_probes}",
              t.challenge_spike_for, severity.ticket,
              "Tor users meet far more challenges than usual on a target.",
              "{{ $labels.target }} ({{ $labels.fetcher }}): {{ $value | humanizePercentage }} of probes met a "
              f"challenge in the last hour, more than {times(t.challenge_spike_factor)} the target's 1-day "
              "baseline.",
              target_dashboard),
        alert("CaptchaTargetBlockedForTor",
              f"target_fetcher:captcha_blocks_per_probes:ratio_rate1h > {t.blocked_ratio}\n"
              f"and target_fetcher:captcha_probes:increase1h >= {t.min_probes}",
              t.blocked_for, severity.ticket,
              "A target blocks most Tor exits.",
              "{{ $labels.target }} ({{ $labels.fetcher }}) answered {{ $value | humanizePercentage }} of probes in "
              "the last hour with a block page.",
              target_dashboard),
        alert("CaptchaPageModifiedForTor",
              f"target_fetcher_kind:captcha_page_changes_per_probes:ratio_rate1h > {t.page_modified_ratio}\n"
              f"and ignoring (kind) target_fetcher:captcha_probes:increase1h >= {t.min_probes}",
              t.page_modified_for, severity.ticket,
              "A target serves Tor users a modified page.",
              "{{ $labels.target }} ({{ $labels.fetcher }}): {{ $value | humanizePercentage }} of probes in the "
              "last hour saw a page that was {{ $labels.kind }} compared with the expected page.",
              target_dashboard),
        alert("CaptchaProbeErrorRateHigh",
              f"target_fetcher:captcha_probe_errors_per_attempts:ratio_rate1h > {t.probe_error_ratio}\n"
              f"and target_fetcher:captcha_probe_attempts:increase1h >= {t.min_probes}",
              t.probe_error_for, severity.ticket,
              "Most probes of a target fail before a page is classified.",
              "{{ $value | humanizePercentage }} of probes of {{ $labels.target }} ({{ $labels.fetcher }}) failed "
              "in the last hour (timeouts, circuits, browser errors); its ratios rest on few measurements.",
              health_dashboard),
        # Coverage is only judged where it can grow: a target with an answer in the window (before its
        # first answers every coverage is 0), and an exporter probing (CaptchaTorDown covers the rest).
        alert("CaptchaExitCoverageLow",
              f"target_fetcher:captcha_exit_coverage_ratio:sum < {t.exit_coverage_ratio}\n"
              "and on (job, target, fetcher) target_fetcher:captcha_probes:increase1d > 0\n"
              f"unless on (job) (min by (job) (captcha_tor_up{s()}) == 0)",
              t.exit_coverage_for, severity.info,
              "Measurements cover too little of the Tor exit capacity.",
              "Exits that answered for {{ $labels.target }} ({{ $labels.fetcher }}) within the window carry "
              "only {{ $value | humanizePercentage }} of the exit probability (exits not tried, or whose probes "
              "failed, are missing); the weighted challenge ratio is not representative.",
              target_dashboard),
    ]
    health = [
        alert("CaptchaExporterDown", f"up{s()} == 0", t.exporter_down_for, severity.page,
              "Prometheus cannot scrape captcha-exporter.",
              "Scrapes of {{ $labels.instance }} (job {{ $labels.job }}) have failed for "
              f"{t.exporter_down_for}; no CAPTCHA measurements are being recorded.",
              health_dashboard),
        alert("CaptchaExporterAbsent", f"absent(up{s()})", t.exporter_down_for, severity.page,
              "captcha-exporter has disappeared from Prometheus.",
              f"No target of job {{{{ $labels.job }}}} has been scraped for {t.exporter_down_for} (service "
              "discovery or scrape config lost it).",
              health_dashboard),
        alert("CaptchaTorDown", f"captcha_tor_up{s()} == 0", t.tor_down_for, severity.page,
              "An exporter cannot measure: its tor is unreachable or not ready.",
              "{{ $labels.instance }} has had no usable tor (control connection and a consensus with exits) for "
              f"{t.tor_down_for}; its /-/ready page says why. Nothing is being probed there.",
              health_dashboard),
        alert("CaptchaTargetNotProbed",
              f"time() - captcha_last_probe_timestamp_seconds{s()}\n"
              "> on (job, instance, target) group_left ()\n"
              f"  clamp_min({t.not_probed_intervals:g} * captcha_target_interval_seconds{s()}, "
              f"{t.not_probed_min_seconds:g})\n{tor_up}",
              t.not_probed_for, severity.ticket,
              "A target has not been probed for several of its intervals.",
              "{{ $labels.target }} ({{ $labels.fetcher }}) on {{ $labels.instance }} was last probed "
              f"{{{{ $value | humanizeDuration }}}} ago, more than {t.not_probed_intervals:g} times its interval; "
              "tor is up, so its probes are stuck or failing before they complete.",
              health_dashboard),
        # Each run takes the exits tried longest ago, so in step with the plan the oldest attempt is at
        # most ceil(pending / exits_per_run) + 1 intervals old.
        alert("CaptchaProbeBacklogGrowing",
              f"time() - captcha_plan_oldest_attempt_timestamp_seconds{s()}\n"
              f"> clamp_min(\n  {t.backlog_rounds:g} * captcha_target_interval_seconds{s()}\n"
              f"  * (ceil(captcha_plan_pending{s()} / captcha_target_exits_per_run{s()}) + 1),\n"
              f"  {t.backlog_min_seconds:g}\n)\n{tor_up}",
              t.backlog_for, severity.ticket,
              "Probes fall behind a target's plan.",
              "The exit of {{ $labels.target }} tried longest ago on {{ $labels.instance }} was tried "
              f"{{{{ $value | humanizeDuration }}}} ago, more than {times(t.backlog_rounds)} what its plan "
              "needs: the lanes cannot keep up with its interval and exits per run.",
              health_dashboard),
        alert("CaptchaBrowserCrashLooping",
              "sum without (reason) (\n"
              f"  increase(captcha_browser_restarts_total{crashes}[{t.browser_crash_window}])\n"
              f") >= {t.browser_crashes}",
              t.browser_crash_for, severity.ticket,
              "A fetcher's browsers keep crashing.",
              "{{ $labels.fetcher }} on {{ $labels.instance }}: {{ $value | humanize }} browsers crashed or could "
              f"not start within {t.browser_crash_window}; its probes fail as browser errors.",
              health_dashboard),
        alert("CaptchaConsensusStale",
              f"time() - captcha_consensus_valid_after_timestamp_seconds{s()} > {t.consensus_age_seconds:g}",
              t.consensus_stale_for, severity.ticket,
              "The exporter's Tor consensus has expired.",
              "The consensus used by {{ $labels.instance }} became valid {{ $value | humanizeDuration }} ago; "
              "exit selection and weights are out of date.",
              health_dashboard),
        alert("CaptchaConfigReloadFailed", f"captcha_config_last_reload_successful{s()} == 0",
              t.reload_failed_for, severity.ticket,
              "The exporter rejected its configuration file.",
              "The last configuration reload of {{ $labels.instance }} failed; it keeps running with the "
              "previous configuration.",
              health_dashboard),
    ]
    return {"groups": [{"name": "captcha-exporter.alerts", "rules": findings + health}]}


def times(factor: float) -> str:
    return "twice" if factor == 2 else f"{factor:g} times"
