"""Recording rules, named level:metric:operations.

Level ``target_fetcher``: one series per (job, target, fetcher); country,
provider and instance are summed away with ``without``, so any extra target
labels from the scrape config survive. Ratios are always a sum of events
divided by a sum of probes, never an average of ratios.

Probes arrive every ~10 minutes per target, so windows are 1h (the "now") and
1d (the target's own baseline); shorter windows hold too few probes. A target
that has never been challenged has no captcha_challenges_total series at all,
so ratios fall back to ``0 * probes`` to read 0, not "absent".

With several replicas (--shard) each covers its own exits: coverages add up,
and the replicas' weighted ratios combine weighted by the exit weight each
one measured (one replica: the same values).
"""

from __future__ import annotations

from mixin.config import Config


def prometheus_rules(config: Config) -> dict:
    s = config.selector

    def increase(metric: str, without: str, window: str) -> str:
        return f"sum without ({without}) (increase({metric}{s()}[{window}]))"

    def ratio(events: str, probes_record: str, window: str) -> str:
        return (f"(\n  {increase(events, 'instance, country, provider', window)}\n"
                f"  or 0 * {probes_record}\n)\n/ {probes_record}")

    counts = [
        record("target_fetcher:captcha_probes:increase1h", increase("captcha_probes_total", "instance, country", "1h")),
        record("target_fetcher:captcha_probes:increase1d", increase("captcha_probes_total", "instance, country", "1d")),
        record("target_fetcher:captcha_probe_errors:increase1h",
               increase("captcha_probe_errors_total", "instance, reason", "1h")),
        # attempts = answered probes + failed probes; either side may be absent
        record("target_fetcher:captcha_probe_attempts:increase1h",
               "(target_fetcher:captcha_probes:increase1h or 0 * target_fetcher:captcha_probe_errors:increase1h)\n"
               "+ (target_fetcher:captcha_probe_errors:increase1h or 0 * target_fetcher:captcha_probes:increase1h)"),
    ]
    ratios = [
        record(f"target_fetcher:captcha_{kind}_per_probes:ratio_rate{window}",
               ratio(f"captcha_{kind}_total", f"target_fetcher:captcha_probes:increase{window}", window))
        for kind in ("challenges", "blocks") for window in ("1h", "1d")
    ] + [
        # one series per changed-page kind (injected, rewritten, different)
        record("target_fetcher_kind:captcha_page_changes_per_probes:ratio_rate1h",
               f"{increase('captcha_page_changed_total', 'instance, country', '1h')}\n"
               "/ ignoring (kind) group_left ()\ntarget_fetcher:captcha_probes:increase1h"),
        record("target_fetcher:captcha_probe_errors_per_attempts:ratio_rate1h",
               "target_fetcher:captcha_probe_errors:increase1h\n/ target_fetcher:captcha_probe_attempts:increase1h"),
        record("target_fetcher:captcha_exit_coverage_ratio:sum",
               f"sum without (instance) (captcha_exit_coverage_ratio{s()})"),
        record("target_fetcher:captcha_weighted_challenge_ratio:coverage_weighted_mean",
               f"sum without (instance) (captcha_weighted_challenge_ratio{s()} * captcha_exit_coverage_ratio{s()})\n"
               f"/\nsum without (instance) (captcha_exit_coverage_ratio{s()})"),
        record("target_fetcher:captcha_page_load_seconds:p90_rate1h",
               f"histogram_quantile(0.9,\n  sum without (instance) (rate(captcha_page_load_seconds_bucket{s()}[1h]))\n)"),
    ]
    return {"groups": [{"name": "captcha-exporter.counts", "rules": counts},
                       {"name": "captcha-exporter.ratios", "rules": ratios}]}


def record(name: str, expr: str) -> dict:
    return {"record": name, "expr": expr}
