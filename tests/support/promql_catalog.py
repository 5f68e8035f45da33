"""Every PromQL expression the project ships, ready to send to a Prometheus.

``catalog()`` lists ``(source, expr)`` pairs from the recording rules and
every dashboard panel query (``alert_exprs()`` lists the alerts), with Grafana
variables replaced by values that select everything (``$target`` → ``.*``,
``$__rate_interval`` → ``1m``, ``$__range`` → ``1h``). An end-to-end test can run each one against the
test bed's Prometheus and assert it returns data; unit tests use it to parse
and lint the same expressions. ``root`` is a directory holding
``prometheus/rules`` and ``grafana/dashboards``: the repository (the shipped
files), or wherever ``python -m mixin --out`` wrote files of another config.

    python tests/support/promql_catalog.py   # prints source<TAB>expr lines
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def rule_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "prometheus" / "rules").glob("*.yml"))


def dashboard_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "grafana" / "dashboards").glob("*.json"))


# Grafana's built-in interval variables, as a 1-minute scrape interval gives them.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace ``$var`` / ``${var}`` / ``${var:fmt}``: built-ins by durations, others by ``values`` or ``.*``."""
    values = {**BUILTINS, **(values or {})}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, ".*")

    return VARIABLE.sub(replace, expr)


def _rule_exprs(kind: str, root: Path) -> list[tuple[str, str]]:
    found = []
    for path in rule_files(root):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if kind in rule:
                    found.append((f"{path.relative_to(root)}:{rule[kind]}", rule["expr"].strip()))
    return found


def recording_exprs(root: Path = ROOT) -> list[tuple[str, str]]:
    """(``file:record name``, expr) for every recording rule."""
    return _rule_exprs("record", root)


def alert_exprs(root: Path = ROOT) -> list[tuple[str, str]]:
    """(``file:alert name``, expr) for every alert; these return nothing while all is well."""
    return _rule_exprs("alert", root)


def dashboard_exprs(values: dict[str, str] | None = None, root: Path = ROOT) -> list[tuple[str, str]]:
    """(``file:panel title:refId``, expr) for every panel target, variables substituted."""
    found = []
    for path in dashboard_files(root):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                source = f"{path.relative_to(root)}:{panel['title']}:{target['refId']}"
                found.append((source, substitute(target["expr"], values)))
    return found


def catalog(values: dict[str, str] | None = None, root: Path = ROOT) -> list[tuple[str, str]]:
    """Recording rules and panel queries: each should return data once the exporter has probed."""
    return recording_exprs(root) + dashboard_exprs(values, root)


def contract_table() -> list[tuple[str, str, set[str]]]:
    """(metric, type, label names) rows of the metrics table in docs/architecture.md (the public contract)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = []
    for name, kind, labels in re.findall(r"^\| (captcha_\w+) \|([^|]+)\|([^|]*)\|", text, flags=re.MULTILINE):
        labels = re.sub(r"\([^)]*\)", "", labels)  # drop notes such as "kind (injected, …)"
        rows.append((name, kind.split()[0], {label.strip() for label in labels.split(",") if label.strip()}))
    return rows


def contract_metrics() -> dict[str, set[str]]:
    """Series names → label names; a histogram becomes its ``_bucket`` (with ``le``), ``_sum`` and ``_count``."""
    series = {}
    for name, kind, labels in contract_table():
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series

if __name__ == "__main__":
    for source, expr in catalog() + alert_exprs():
        print(f"{source}\t{' '.join(expr.split())}")
