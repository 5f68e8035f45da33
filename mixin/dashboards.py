"""Grafana dashboards, as code.

The JSON is what Grafana loads (file provisioning, a ConfigMap, or manual
import). Every panel and query uses the ``datasource`` variable instead of
``__inputs`` placeholders, which only Grafana's interactive import would
resolve.

Probes of one target arrive every ~10 minutes, so CAPTCHA ratios use 1h
windows (the recording rules) or the dashboard's time range (``$__range``);
per-second rates use ``$__rate_interval``. Panels over raw counters and
histograms of probes ask for exemplars: each carries the probe id, which the
datasource links to the exporter's ``/probe/<id>`` page.
"""

from __future__ import annotations

from mixin.config import Config

SCHEMA_VERSION = 41
TAG = "captcha-exporter"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

UID_OVERVIEW = "captcha-overview"
UID_TARGET = "captcha-target"
UID_RELAY = "captcha-relay"
UID_HEALTH = "captcha-exporter-health"

# Label names of each series the dashboards select from (docs/architecture.md
# and the recording rules); a filter variable only applies where its label exists.
METRIC_LABELS = {
    "captcha_probes_total": {"target", "fetcher", "country"},
    "captcha_challenges_total": {"target", "fetcher", "country", "provider"},
    "captcha_blocks_total": {"target", "fetcher", "country", "provider"},
    "captcha_widgets_total": {"target", "fetcher", "provider"},
    "captcha_site_errors_total": {"target", "fetcher", "country", "provider"},
    "captcha_probe_errors_total": {"target", "fetcher", "reason"},
    "captcha_page_load_seconds_bucket": {"target", "fetcher", "le"},
    "captcha_challenge_outcomes_total": {"target", "fetcher", "provider", "outcome"},
    "captcha_challenge_clear_seconds_bucket": {"target", "fetcher", "provider", "le"},
    "captcha_exit_weight": {"fingerprint"},
    "captcha_exit_info": {"fingerprint", "nickname", "country"},
    "captcha_exit_probes_total": {"fingerprint"},
    "captcha_exit_challenges_total": {"fingerprint"},
    "captcha_exit_blocks_total": {"fingerprint"},
    "captcha_weighted_challenge_ratio": {"target", "fetcher"},
    "captcha_exit_coverage_ratio": {"target", "fetcher"},
    "captcha_last_probe_timestamp_seconds": {"target", "fetcher"},
    "captcha_circuit_failures_total": {"reason"},
    "captcha_probes_in_flight": set(),
    "captcha_probes_queued": set(),
    "captcha_consensus_valid_after_timestamp_seconds": set(),
    "captcha_exporter_build_info": {"version", "revision", "tor_version"},
    "captcha_tor_up": set(),
    "captcha_target_interval_seconds": {"target"},
    "captcha_target_exits_per_run": {"target"},
    "captcha_plan_pending": {"target"},
    "captcha_plan_oldest_attempt_timestamp_seconds": {"target"},
    "captcha_exits_backing_off": set(),
    "captcha_browser_restarts_total": {"fetcher", "reason"},
    "process_resident_memory_bytes": set(),
    "process_cpu_seconds_total": set(),
    "process_start_time_seconds": set(),
    "captcha_page_changed_total": {"target", "fetcher", "country", "kind"},
    "captcha_page_similarity_ratio": {"target", "fetcher"},
    "captcha_target_onion_available": {"target", "kind"},
    "captcha_config_last_reload_successful": set(),
    "captcha_config_last_reload_success_timestamp_seconds": set(),
    "up": set(),
    "scrape_duration_seconds": set(),
    "target_fetcher:captcha_challenges_per_probes:ratio_rate1h": {"target", "fetcher"},
    "target_fetcher:captcha_challenges_per_probes:ratio_rate1d": {"target", "fetcher"},
    "target_fetcher:captcha_blocks_per_probes:ratio_rate1h": {"target", "fetcher"},
    "target_fetcher:captcha_blocks_per_probes:ratio_rate1d": {"target", "fetcher"},
    "target_fetcher:captcha_probe_errors_per_attempts:ratio_rate1h": {"target", "fetcher"},
    "target_fetcher:captcha_weighted_challenge_ratio:coverage_weighted_mean": {"target", "fetcher"},
    "target_fetcher:captcha_exit_coverage_ratio:sum": {"target", "fetcher"},
    "target_fetcher:captcha_page_load_seconds:p90_rate1h": {"target", "fetcher"},
}

# The exporter's page listing recent probes; evidence (HAR, HTML, screenshot)
# is kept under its data_dir. ${exporter_url} is a textbox variable.
EVIDENCE_URL = "${exporter_url}/?target=${target}"

# Tor Metrics' page of a relay (Relay Search), by fingerprint.
TOR_METRICS_LINK = {"title": "Tor Metrics relay page", "targetBlank": True,
                    "url": "https://metrics.torproject.org/rs.html#details/${__data.fields.fingerprint}"}

RATIO_THRESHOLDS = [(None, "green"), (0.2, "orange"), (0.5, "red")]


class Selector:
    """Builds ``metric{label=~"$var",…}`` for the filter variables of one dashboard."""

    def __init__(self, *variables: str):
        self.variables = ("job", *variables)

    def __call__(self, metric: str) -> str:
        labels = METRIC_LABELS[metric] | {"job", "instance"}
        matchers = ",".join(f'{v}=~"${v}"' for v in self.variables if v in labels)
        return f"{metric}{{{matchers}}}"

    def ratio(self, events: str, probes: str, window: str, by: str = "") -> str:
        """sum(events) / sum(probes); 0 (not absent) where no event was ever counted."""
        grouping = f" by ({by})" if by else ""
        total = f"sum{grouping} (increase({self(probes)}[{window}]))"
        counted = f"sum{grouping} (increase({self(events)}[{window}]))"
        zero = f"0 * {total}" if by else "vector(0)"
        return f"({counted} or {zero}) / {total}"


# ---------------------------------------------------------------- panel JSON


def query(expr: str, legend: str = "", *, table: bool = False, exemplar: bool = False) -> dict:
    """A Prometheus target; ``table`` makes it an instant query whose labels become columns;
    ``exemplar`` asks for the probe ids behind the series (raw counters and histograms only)."""
    target = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not table,
        "instant": table,
        "format": "table" if table else "time_series",
    }
    if exemplar:
        target["exemplar"] = True
    return target


def thresholds(steps=((None, "green"),)) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def panel(kind: str, title: str, description: str, targets: list[dict], *, unit: str,
          width: int, height: int, options: dict, custom: dict | None = None,
          steps=((None, "green"),), color_mode: str = "palette-classic",
          mappings: list | None = None, links: list | None = None,
          overrides: list | None = None, transformations: list | None = None,
          min_value: float | None = None, max_value: float | None = None) -> dict:
    defaults = {"unit": unit, "color": {"mode": color_mode}, "thresholds": thresholds(steps),
                "mappings": mappings or []}
    if custom is not None:
        defaults["custom"] = custom
    if links:
        defaults["links"] = links
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    result = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(title, description, targets, *, unit, width=12, height=8, steps=((None, "green"),),
               threshold_style="off", links=None, min_value=None, max_value=None) -> dict:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
              "spanNulls": True, "thresholdsStyle": {"mode": threshold_style}}
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return panel("timeseries", title, description, targets, unit=unit, width=width, height=height,
                 options=options, custom=custom, steps=steps, links=links,
                 min_value=min_value, max_value=max_value)


def stat(title, description, targets, *, unit, width=4, height=4, steps=((None, "green"),),
         mappings=None, text_mode="auto") -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "colorMode": "value", "graphMode": "none", "textMode": text_mode,
               "justifyMode": "auto", "orientation": "auto", "wideLayout": True,
               "showPercentChange": False}
    return panel("stat", title, description, targets, unit=unit, width=width, height=height,
                 options=options, steps=steps, color_mode="thresholds", mappings=mappings)


def bargauge(title, description, targets, *, unit, width=8, height=8) -> dict:
    options = {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
               "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
               "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300,
               "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return panel("bargauge", title, description, targets, unit=unit, width=width, height=height,
                 options=options, color_mode="continuous-BlPu")


def table(title, description, targets, *, unit, width=12, height=8, rename=None, hide=("Time",),
          overrides=None, steps=((None, "green"),), merge=False) -> dict:
    options = {"showHeader": True, "cellHeight": "sm",
               "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    transformations = [{"id": "merge", "options": {}}] if merge else []
    transformations.append({"id": "organize", "options": {
        "excludeByName": {name: True for name in hide}, "renameByName": rename or {}}})
    return panel("table", title, description, targets, unit=unit, width=width, height=height,
                 options=options, custom={"align": "auto", "cellOptions": {"type": "auto"}},
                 steps=steps, color_mode="thresholds", overrides=overrides,
                 transformations=transformations)


def geomap(title, description, targets, *, unit, steps, width=16, height=10) -> dict:
    """Markers placed by looking the ``country`` column up in Grafana's own gazetteer.

    The basemap is the world GeoJSON that Grafana serves itself, so the map
    renders without internet access (the default CARTO basemap is fetched online).
    """
    options = {
        "view": {"id": "zero", "lat": 0, "lon": 0, "zoom": 1, "allLayers": True},
        "controls": {"showZoom": True, "mouseWheelZoom": False, "showAttribution": False},
        "basemap": {"type": "geojson", "name": "World",
                    "config": {"src": "public/maps/countries.geojson", "rules": [],
                               "style": {"color": {"fixed": "dark-green"}, "opacity": 0.4}}},
        "layers": [{
            "type": "markers", "name": "Countries", "tooltip": True,
            "location": {"mode": "lookup", "lookup": "country",
                         "gazetteer": "public/gazetteer/countries.json"},
            "config": {"showLegend": True, "shape": "circle",
                       "size": {"fixed": 6, "min": 4, "max": 16, "field": "Value"},
                       "color": {"field": "Value", "fixed": "dark-green"}},
        }],
        "tooltip": {"mode": "details"},
    }
    return panel("geomap", title, description, targets, unit=unit, width=width, height=height,
                 options=options, steps=steps, color_mode="thresholds", min_value=0, max_value=1)


UP_DOWN = [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                          "1": {"text": "up", "color": "green"}}}]
OK_FAILED = [{"type": "value", "options": {"0": {"text": "failed", "color": "red"},
                                            "1": {"text": "ok", "color": "green"}}}]
YES_NO = [{"type": "value", "options": {"0": {"text": "no", "color": "text"},
                                         "1": {"text": "yes", "color": "green"}}}]


# ------------------------------------------------------------------ variables


def datasource_variable() -> dict:
    return {"type": "datasource", "name": "datasource", "label": "Data source",
            "query": "prometheus", "regex": "", "hide": 0, "refresh": 1}


def target_variable(*, multi: bool = True) -> dict:
    """Every configured target, probed or not (the interval gauge exists from the start)."""
    return query_variable("target", "Target", 'label_values(captcha_target_interval_seconds{job=~"$job"}, target)',
                          multi=multi)


def fetcher_variable() -> dict:
    """The target's fetchers (the error counters start at 0 for every configured pair)."""
    return query_variable("fetcher", "Fetcher",
                          'label_values(captcha_probe_errors_total{job=~"$job",target=~"$target"}, fetcher)')


def query_variable(name: str, label: str, definition: str, *, multi: bool = True) -> dict:
    return {
        "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
        "definition": definition,
        "query": {"qryType": 1, "query": definition,
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "sort": 1, "regex": "", "hide": 0,
        "multi": multi, "includeAll": multi, **({"allValue": ".*"} if multi else {}),
    }


def job_variable(config: Config) -> dict:
    return query_variable("job", "Job", f"label_values(captcha_exporter_build_info{config.selector()}, job)")


def textbox_variable(name: str, label: str, default: str, description: str) -> dict:
    return {"type": "textbox", "name": name, "label": label, "query": default,
            "description": description, "hide": 0,
            "current": {"text": default, "value": default}}


def dashboard_links() -> list[dict]:
    return [{"title": "captcha-exporter", "type": "dashboards", "tags": [TAG], "asDropdown": True,
             "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "external link",
             "tooltip": "", "url": ""}]


def dashboard(config: Config, uid: str, title: str, description: str, variables: list[dict],
              rows: list[list[dict]], links: list[dict] | None = None) -> dict:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "refresh": config.dashboard_refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": dashboard_links() + (links or []),
        "annotations": {"list": []},
        "templating": {"list": [datasource_variable(), job_variable(config), *variables]},
        "panels": layout(rows),
    }


def layout(rows: list[list[dict]]) -> list[dict]:
    """Place rows of panels left to right, top to bottom; number the panels."""
    panels, y, next_id = [], 0, 1
    for row in rows:
        x = 0
        for p in row:
            p["gridPos"].update(x=x, y=y)
            p["id"] = next_id
            next_id += 1
            x += p["gridPos"]["w"]
        if x > 24:
            raise ValueError(f"row starting with {row[0]['title']!r} is {x} columns wide")
        y += max(p["gridPos"]["h"] for p in row)
        panels.extend(row)
    return panels


# ----------------------------------------------------------------- dashboards


def overview(config: Config) -> dict:
    s = Selector("target", "fetcher")
    exits = Selector()
    country_ratio = s.ratio("captcha_challenges_total", "captcha_probes_total", "$__range", by="country")
    exit_ratio = s.ratio("captcha_exit_challenges_total", "captcha_exit_probes_total", "$__range",
                         by="fingerprint")
    relay_link = (f"/d/{UID_RELAY}/relay-search?${{datasource:queryparam}}&${{job:queryparam}}"
                  "&var-fingerprint=${__data.fields.fingerprint}&${__url_time_range}")
    target_link = (f"/d/{UID_TARGET}/target?${{datasource:queryparam}}&${{job:queryparam}}"
                   "&var-target=${__field.labels.target}&${__url_time_range}")
    by_provider = "sum by (provider) (increase({}[$__range]))"
    rows = [
        [
            stat("Targets", "Targets with at least one completed probe in the selection.",
                 [query(f"count(count by (target) ({s('captcha_last_probe_timestamp_seconds')}))")],
                 unit="none"),
            stat("Probes", "Completed probes in the time range (all targets, fetchers and exits selected).",
                 [query(f"sum(increase({s('captcha_probes_total')}[$__range]))")], unit="short"),
            stat("Challenge ratio", "Challenged probes / completed probes over the time range.",
                 [query(s.ratio("captcha_challenges_total", "captcha_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Block ratio", "Probes answered with a block page / completed probes over the time range.",
                 [query(s.ratio("captcha_blocks_total", "captcha_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Probe error ratio", "Failed probes / (completed + failed probes) over the time range.",
                 [query(f"(sum(increase({s('captcha_probe_errors_total')}[$__range])) or vector(0))"
                        f" / (sum(increase({s('captcha_probes_total')}[$__range]))"
                        f" + (sum(increase({s('captcha_probe_errors_total')}[$__range])) or vector(0)))")],
                 unit="percentunit", steps=((None, "green"), (0.1, "orange"), (0.5, "red"))),
            stat("Lowest exit coverage", "Smallest share of Tor exit probability measured for any selected "
                 "target and fetcher within the exporter's window (schedule.window).",
                 [query(f"min({s('target_fetcher:captcha_exit_coverage_ratio:sum')})")],
                 unit="percentunit", steps=((None, "red"), (0.5, "orange"), (0.8, "green"))),
        ],
        [
            timeseries("Challenge ratio per target (1h)",
                       "Challenged probes / completed probes over the preceding hour, per target and fetcher "
                       "(recording rule target_fetcher:captcha_challenges_per_probes:ratio_rate1h). "
                       "Click a line to open the Target dashboard.",
                       [query(s("target_fetcher:captcha_challenges_per_probes:ratio_rate1h"),
                              "{{target}} {{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1,
                       links=[{"title": "Target dashboard", "url": target_link}]),
            timeseries("Block ratio per target (1h)",
                       "Probes answered with a block page / completed probes over the preceding hour.",
                       [query(s("target_fetcher:captcha_blocks_per_probes:ratio_rate1h"), "{{target}} {{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1,
                       links=[{"title": "Target dashboard", "url": target_link}]),
        ],
        [
            timeseries("Weighted challenge ratio",
                       "Challenge ratio with each exit weighted by its exit probability, as computed by the "
                       "exporter: the chance that a Tor user's circuit meets a challenge.",
                       [query(s("target_fetcher:captcha_weighted_challenge_ratio:coverage_weighted_mean"), "{{target}} {{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1),
            timeseries("Exit coverage",
                       "Share of the total exit probability carried by the exits measured within the "
                       "exporter's window; a low value makes the weighted ratio unrepresentative.",
                       [query(s("target_fetcher:captcha_exit_coverage_ratio:sum"), "{{target}} {{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1),
        ],
        [
            geomap("Challenge ratio by exit country",
                   "Challenged probes / completed probes over the time range, by the country of the exit "
                   "relay (uppercase ISO 3166 alpha-2, looked up in Grafana's gazetteer; '??' is not drawn).",
                   [query(country_ratio, table=True)], unit="percentunit", steps=RATIO_THRESHOLDS),
            table("By exit country", "Challenge ratio per exit country over the time range, worst first.",
                  [query(country_ratio, table=True)], unit="percentunit", width=8, height=10,
                  rename={"Value": "challenge ratio"}, steps=RATIO_THRESHOLDS),
        ],
        [
            bargauge("Challenges by provider", "Challenges seen in the time range, by the vendor that served them.",
                     [query(by_provider.format(s("captcha_challenges_total")), "{{provider}}")], unit="short"),
            bargauge("Blocks by provider", "Block pages seen in the time range, by the vendor that served them.",
                     [query(by_provider.format(s("captcha_blocks_total")), "{{provider}}")], unit="short"),
            bargauge("Widgets by provider", "Pages that embedded a CAPTCHA widget (no interstitial) in the "
                     "time range, by vendor.",
                     [query(by_provider.format(s("captcha_widgets_total")), "{{provider}}")], unit="short"),
        ],
        [
            table("Most challenged exits",
                  "The 20 exit relays with the highest challenge ratio over the time range (all targets; exit "
                  "counters carry no target label). Click a fingerprint for its Relay search dashboard.",
                  [query(f"topk(20, {exit_ratio} * on (fingerprint) group_left (nickname, country) "
                         f"max by (fingerprint, nickname, country) ({exits('captcha_exit_info')}))", table=True)],
                  unit="percentunit", rename={"Value": "challenge ratio"}, steps=RATIO_THRESHOLDS,
                  overrides=[{"matcher": {"id": "byName", "options": "fingerprint"},
                              "properties": [{"id": "links", "value": [
                                  {"title": "Relay search", "url": relay_link}, TOR_METRICS_LINK]}]}]),
            timeseries("Probe errors by reason",
                       "Probes that failed before a page was classified, per minute, by reason.",
                       [query(f"sum by (reason) (rate({s('captcha_probe_errors_total')}[$__rate_interval])) * 60",
                              "{{reason}}")], unit="opm"),
        ],
        [
            timeseries("Page load time p90 (1h)", "90th percentile of the time to load a page (final response), "
                       "over the preceding hour, per target and fetcher.",
                       [query(s("target_fetcher:captcha_page_load_seconds:p90_rate1h"), "{{target}} {{fetcher}}")],
                       unit="s"),
            timeseries("Probe error ratio (1h)", "Failed probes / (completed + failed probes) over the "
                       "preceding hour, per target and fetcher.",
                       [query(s("target_fetcher:captcha_probe_errors_per_attempts:ratio_rate1h"),
                              "{{target}} {{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1),
        ],
    ]
    return dashboard(config, UID_OVERVIEW, "CAPTCHA exporter / Overview",
                     "How often Tor users meet CAPTCHAs, challenges and block pages, per target, provider "
                     "and exit country.",
                     [target_variable(), fetcher_variable()], rows)


def target(config: Config) -> dict:
    s = Selector("target", "fetcher", "country")
    late = config.thresholds.not_probed_intervals
    spike = config.thresholds
    evidence = [{"title": "Recent probes and evidence of ${target} (exporter)",
                 "url": EVIDENCE_URL, "targetBlank": True}]
    per_country = "sum by (country) (increase({}[$__range]))"
    quantile = "histogram_quantile({q}, sum by (le{by}) (increase({m}[1h])))"
    rows = [
        [
            stat("Challenge ratio", "Challenged probes / completed probes over the time range.",
                 [query(s.ratio("captcha_challenges_total", "captcha_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Block ratio", "Block pages / completed probes over the time range.",
                 [query(s.ratio("captcha_blocks_total", "captcha_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Weighted challenge ratio", "Exit-probability-weighted challenge ratio (highest of the "
                 "selected fetchers).",
                 [query(f"max({s('target_fetcher:captcha_weighted_challenge_ratio:coverage_weighted_mean')})")],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Exit coverage", "Share of exit probability measured within the exporter's window "
                 "(lowest of the selected fetchers).",
                 [query(f"min({s('target_fetcher:captcha_exit_coverage_ratio:sum')})")],
                 unit="percentunit", steps=((None, "red"), (0.5, "orange"), (0.8, "green"))),
            stat("Page load p90", "90th percentile page load time over the time range.",
                 [query(f"histogram_quantile(0.9, sum by (le) "
                        f"(increase({s('captcha_page_load_seconds_bucket')}[$__range])))")], unit="s"),
            stat("Intervals since last probe", "Time since the most recent completed probe of this target, in "
                 f"intervals of the target (CaptchaTargetNotProbed fires above {late:g}).",
                 [query(f"(time() - max({s('captcha_last_probe_timestamp_seconds')}))"
                        f" / max({s('captcha_target_interval_seconds')})")], unit="none",
                 steps=((None, "green"), (late, "red"))),
        ],
        [
            timeseries("Challenge ratio: last hour vs. 1-day baseline",
                       "Per fetcher: challenge ratio over the preceding hour and over the preceding day "
                       f"(CaptchaChallengeRateSpike fires at {spike.challenge_spike_factor:g} times the baseline "
                       f"and above {spike.challenge_spike_ratio:.0%}).",
                       [query(s("target_fetcher:captcha_challenges_per_probes:ratio_rate1h"), "{{fetcher}} 1h"),
                        query(s("target_fetcher:captcha_challenges_per_probes:ratio_rate1d"), "{{fetcher}} 1d")],
                       unit="percentunit", min_value=0, max_value=1, links=evidence),
            timeseries("Block ratio: last hour vs. 1-day baseline",
                       "Per fetcher: block-page ratio over the preceding hour and over the preceding day.",
                       [query(s("target_fetcher:captcha_blocks_per_probes:ratio_rate1h"), "{{fetcher}} 1h"),
                        query(s("target_fetcher:captcha_blocks_per_probes:ratio_rate1d"), "{{fetcher}} 1d")],
                       unit="percentunit", min_value=0, max_value=1, links=evidence),
        ],
        [
            table("By exit country", "Completed probes, challenges and blocks over the time range, per exit "
                  "country.",
                  [query(per_country.format(s("captcha_probes_total")), table=True),
                   query(per_country.format(s("captcha_challenges_total")), table=True),
                   query(per_country.format(s("captcha_blocks_total")), table=True)],
                  unit="short", merge=True,
                  rename={"Value #A": "probes", "Value #B": "challenges", "Value #C": "blocks"}),
            bargauge("Gate pages by provider", "Challenges, block pages and site error pages in the time "
                     "range, by the vendor that served them.",
                     [query(f"sum by (provider) (increase({s('captcha_challenges_total')}[$__range]))",
                            "challenge: {{provider}}"),
                      query(f"sum by (provider) (increase({s('captcha_blocks_total')}[$__range]))",
                            "block: {{provider}}"),
                      query(f"sum by (provider) (increase({s('captcha_site_errors_total')}[$__range]))",
                            "site error: {{provider}}")],
                     unit="short", width=12),
        ],
        [
            timeseries("Challenges and blocks (per hour)", "Challenges and block pages over a sliding hour, "
                       "by vendor. The dots are single probes: open one for its evidence.",
                       [query(f"sum by (provider) (increase({s('captcha_challenges_total')}[1h]))",
                              "challenge: {{provider}}", exemplar=True),
                        query(f"sum by (provider) (increase({s('captcha_blocks_total')}[1h]))",
                              "block: {{provider}}", exemplar=True)],
                       unit="short", width=8, links=evidence),
            timeseries("Challenge outcomes (per hour)", "What the browser's challenge turned into, over a "
                       "sliding hour: cleared by itself, needs interaction, or blocked.",
                       [query(f"sum by (provider, outcome) "
                              f"(increase({s('captcha_challenge_outcomes_total')}[1h]))", "{{provider}} {{outcome}}",
                              exemplar=True)],
                       unit="short", width=8, links=evidence),
            timeseries("Challenge clear time", "Time a self-clearing challenge took to let the browser through "
                       "(p50 and p90 over a sliding hour).",
                       [query(quantile.format(q=0.5, by=", provider", m=s("captcha_challenge_clear_seconds_bucket")),
                              "p50 {{provider}}", exemplar=True),
                        query(quantile.format(q=0.9, by=", provider", m=s("captcha_challenge_clear_seconds_bucket")),
                              "p90 {{provider}}")], unit="s", width=8),
        ],
        [
            timeseries("Page load time", "Time to load the page (final response), p50 and p90 over a sliding "
                       "hour, per fetcher. The dots are single probes: open one for its evidence.",
                       [query(quantile.format(q=0.5, by=", fetcher", m=s("captcha_page_load_seconds_bucket")),
                              "p50 {{fetcher}}", exemplar=True),
                        query(quantile.format(q=0.9, by=", fetcher", m=s("captcha_page_load_seconds_bucket")),
                              "p90 {{fetcher}}")], unit="s"),
            timeseries("Page changed for Tor (per hour)", "Probes whose page differed from the expected page, "
                       "by kind (injected, rewritten, different), over a sliding hour.",
                       [query(f"sum by (kind) (increase({s('captcha_page_changed_total')}[1h]))", "{{kind}}")],
                       unit="short", links=evidence),
        ],
        [
            timeseries("Widgets (per hour)", "Pages embedding a CAPTCHA widget without an interstitial, by "
                       "vendor, over a sliding hour.",
                       [query(f"sum by (provider) (increase({s('captcha_widgets_total')}[1h]))", "{{provider}}")],
                       unit="short"),
            timeseries("Page similarity", "Similarity of the page seen through Tor to the expected page "
                       "(1 = identical).",
                       [query(s("captcha_page_similarity_ratio"), "{{fetcher}}")],
                       unit="percentunit", min_value=0, max_value=1, width=8),
            stat("Onion service offered", "Whether the target advertises an onion address (Alt-Svc or "
                 "Onion-Location header).",
                 [query(f"max by (kind) ({s('captcha_target_onion_available')})", "{{kind}}")],
                 unit="none", mappings=YES_NO, width=4, height=8),
        ],
    ]
    return dashboard(config, UID_TARGET, "CAPTCHA exporter / Target",
                     "One target across exits, fetchers and time, with links to the exporter's evidence.",
                     [target_variable(multi=False), fetcher_variable(),
                      query_variable("country", "Exit country",
                                     'label_values(captcha_probes_total{job=~"$job",target=~"$target"}, country)'),
                      textbox_variable("exporter_url", "Exporter URL", config.exporter_url,
                                       "Base URL of the exporter's web page, for evidence links.")],
                     rows,
                     links=[{"title": "Recent probes and evidence (exporter)", "type": "link",
                             "url": EVIDENCE_URL, "targetBlank": True,
                             "icon": "doc", "tooltip": "The exporter's recent-probes table",
                             "tags": [], "asDropdown": False, "includeVars": False, "keepTime": False}])


def relay(config: Config) -> dict:
    s = Selector("fingerprint")
    by_nickname = Selector("nickname")
    per_hour = "sum(increase({}[1h]))"
    pick = (f"/d/{UID_RELAY}/relay-search?${{datasource:queryparam}}&${{job:queryparam}}"
            "&${nickname:queryparam}&var-fingerprint=${__data.fields.fingerprint}&${__url_time_range}")
    fingerprint_links = [{"matcher": {"id": "byName", "options": "fingerprint"},
                          "properties": [{"id": "links", "value": [TOR_METRICS_LINK]}]}]
    rows = [
        [
            table("Relay", "Nickname and country of the exit as the exporter last saw them in the consensus. "
                  "Click the fingerprint for the relay's page on Tor Metrics.",
                  [query(f"max by (fingerprint, nickname, country) ({s('captcha_exit_info')})", table=True)],
                  unit="none", height=4, hide=("Time", "Value"), overrides=fingerprint_links),
            stat("Exit probability", "Chance that a Tor client picks this relay as its exit (consensus weight "
                 "and flags, Tor Metrics' formula).",
                 [query(f"max({s('captcha_exit_weight')})")], unit="percentunit"),
            stat("Challenge ratio", "Challenged probes / completed probes through this exit over the time range "
                 "(all targets).",
                 [query(s.ratio("captcha_exit_challenges_total", "captcha_exit_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
            stat("Block ratio", "Block pages / completed probes through this exit over the time range.",
                 [query(s.ratio("captcha_exit_blocks_total", "captcha_exit_probes_total", "$__range"))],
                 unit="percentunit", steps=RATIO_THRESHOLDS),
        ],
        [
            timeseries("Verdicts (per hour)", "Completed probes, challenges and blocks through this exit over a "
                       "sliding hour: its verdict history.",
                       [query(per_hour.format(s("captcha_exit_probes_total")), "probes"),
                        query(per_hour.format(s("captcha_exit_challenges_total")), "challenges"),
                        query(per_hour.format(s("captcha_exit_blocks_total")), "blocks")],
                       unit="short"),
            timeseries("Challenge and block ratio (1h)", "Challenged and blocked probes / completed probes "
                       "through this exit over a sliding hour.",
                       [query(s.ratio("captcha_exit_challenges_total", "captcha_exit_probes_total", "1h"),
                              "challenge ratio"),
                        query(s.ratio("captcha_exit_blocks_total", "captcha_exit_probes_total", "1h"),
                              "block ratio")],
                       unit="percentunit", min_value=0, max_value=1),
        ],
        [
            timeseries("Exit probability", "The exit's probability over time, from each consensus.",
                       [query(f"max({s('captcha_exit_weight')})", "exit probability")], unit="percentunit"),
            timeseries("Nickname and country history", "One line per (nickname, country) the relay has "
                       "published; a new line means it changed.",
                       [query(f"max by (nickname, country) ({s('captcha_exit_info')})", "{{nickname}} {{country}}")],
                       unit="none"),
        ],
        [
            table("Exits with the nickname", "Every exit whose nickname the Nickname variable selects, with its "
                  "exit probability: click a fingerprint to show that exit here, or to open its Tor Metrics "
                  "page (nicknames are not unique).",
                  [query(f"max by (fingerprint, nickname, country) ({by_nickname('captcha_exit_weight')} "
                         f"* on (job, instance, fingerprint) group_left (nickname, country) "
                         f"{by_nickname('captcha_exit_info')})", table=True)],
                  unit="percentunit", width=24, rename={"Value": "exit probability"},
                  overrides=[{"matcher": {"id": "byName", "options": "fingerprint"},
                              "properties": [{"id": "links", "value": [{"title": "Show this exit", "url": pick},
                                                                       TOR_METRICS_LINK]}]}]),
        ],
    ]
    return dashboard(config, UID_RELAY, "CAPTCHA exporter / Relay search",
                     "One exit relay, found by nickname or fingerprint: its verdict history, exit probability, "
                     "country and nickname, with a link to its page on Tor Metrics.",
                     [query_variable("nickname", "Nickname", 'label_values(captcha_exit_info{job=~"$job"}, nickname)'),
                      query_variable("fingerprint", "Fingerprint",
                                     'label_values(captcha_exit_info{job=~"$job",nickname=~"$nickname"}, fingerprint)',
                                     multi=False)],
                     rows)


def health(config: Config) -> dict:
    s = Selector("instance")
    late = config.thresholds.not_probed_intervals
    per_minute = "sum by ({by}) (rate({m}[$__rate_interval])) * 60"
    rows = [
        [
            stat("Up", "Whether Prometheus' last scrape of the exporter succeeded.",
                 [query(f"min({s('up')})")], unit="none", mappings=UP_DOWN),
            stat("Version", "Exporter version and the version of the tor it drives.",
                 [query(s("captcha_exporter_build_info"), "{{version}} (tor {{tor_version}})")],
                 unit="none", text_mode="name"),
            stat("Tor", "Whether every selected exporter is connected to tor with a usable consensus and "
                 "probing (CaptchaTorDown fires when one is not).",
                 [query(f"min({s('captcha_tor_up')})")], unit="none", mappings=UP_DOWN),
            stat("Probes queued", "Probes waiting for a free lane.",
                 [query(f"sum({s('captcha_probes_queued')})")], unit="short"),
            stat("Consensus age", "Time since the valid-after time of the consensus in use (a consensus "
                 "expires after 3 hours).",
                 [query(f"time() - max({s('captcha_consensus_valid_after_timestamp_seconds')})")], unit="s",
                 steps=((None, "green"), (10800, "red"))),
            stat("Config reload", "Whether the last configuration reload succeeded.",
                 [query(f"min({s('captcha_config_last_reload_successful')})")], unit="none", mappings=OK_FAILED),
        ],
        [
            timeseries("Probe rate by fetcher", "Completed probes per minute.",
                       [query(per_minute.format(by="fetcher", m=s("captcha_probes_total")), "{{fetcher}}")],
                       unit="opm"),
            timeseries("Probe errors by reason", "Failed probes per minute, by reason.",
                       [query(per_minute.format(by="reason", m=s("captcha_probe_errors_total")), "{{reason}}")],
                       unit="opm"),
        ],
        [
            timeseries("Probe queue", "Probes running and waiting; a queue that never drains means the lanes "
                       "cannot keep up with the schedule.",
                       [query(f"sum({s('captcha_probes_in_flight')})", "in flight"),
                        query(f"sum({s('captcha_probes_queued')})", "queued")], unit="short"),
            timeseries("Circuit failures by reason", "Pinned circuits that could not be built, per minute.",
                       [query(per_minute.format(by="reason", m=s("captcha_circuit_failures_total")), "{{reason}}")],
                       unit="opm"),
        ],
        [
            timeseries("Intervals since last probe", "Time since the last answered probe per instance, target "
                       f"and fetcher, in intervals of the target; CaptchaTargetNotProbed fires above {late:g}.",
                       [query(f"(time() - max by (instance, target, fetcher) "
                              f"({s('captcha_last_probe_timestamp_seconds')}))"
                              f" / on (instance, target) group_left () "
                              f"max by (instance, target) ({s('captcha_target_interval_seconds')})",
                              "{{instance}} {{target}} {{fetcher}}")],
                       unit="none", steps=((None, "green"), (late, "red")), threshold_style="line"),
            timeseries("Consensus age", "Time since the consensus in use became valid.",
                       [query(f"time() - {s('captcha_consensus_valid_after_timestamp_seconds')}", "{{instance}}")],
                       unit="s", steps=((None, "green"), (10800, "red")), threshold_style="line"),
        ],
        [
            timeseries("Exits due per target", "Exits of each target not tried within its interval (each run "
                       "takes the ones tried longest ago).",
                       [query(f"max by (instance, target) ({s('captcha_plan_pending')})", "{{instance}} {{target}}")],
                       unit="short"),
            timeseries("Oldest attempt per target", "Time since the exit tried longest ago for each target was "
                       "tried; CaptchaProbeBacklogGrowing fires when it outgrows the target's plan.",
                       [query(f"time() - max by (instance, target) "
                              f"({s('captcha_plan_oldest_attempt_timestamp_seconds')})", "{{instance}} {{target}}")],
                       unit="s"),
        ],
        [
            timeseries("Browser restarts (per hour)", "Browsers replaced over a sliding hour, by fetcher and why: "
                       "crashed and launch_failed are crashes (CaptchaBrowserCrashLooping).",
                       [query(f"sum by (fetcher, reason) (increase({s('captcha_browser_restarts_total')}[1h]))",
                              "{{fetcher}} {{reason}}")], unit="short"),
            timeseries("Exporter memory", "Resident memory of the exporter process (browsers and tor are "
                       "processes of their own).",
                       [query(s("process_resident_memory_bytes"), "{{instance}}")], unit="bytes"),
        ],
        [
            timeseries("Time since last successful config reload", "Age of the configuration in effect.",
                       [query(f"time() - {s('captcha_config_last_reload_success_timestamp_seconds')}",
                              "{{instance}}")], unit="s"),
            timeseries("Scrape duration", "How long Prometheus' scrape of /metrics takes (the exporter serves "
                       "cached results, so this stays small).",
                       [query(s("scrape_duration_seconds"), "{{instance}}")], unit="s"),
        ],
    ]
    return dashboard(config, UID_HEALTH, "CAPTCHA exporter / Exporter health",
                     "Is the exporter measuring: tor, probe rate, queue and plan, errors by reason, browser "
                     "restarts, consensus age, reloads.",
                     [query_variable("instance", "Instance", 'label_values(up{job=~"$job"}, instance)')],
                     rows)


DASHBOARDS = {
    "overview.json": overview,
    "target.json": target,
    "relay-search.json": relay,
    "exporter-health.json": health,
}


def grafana_dashboards(config: Config) -> dict[str, dict]:
    """Every dashboard by file name."""
    return {name: build(config) for name, build in DASHBOARDS.items()}
