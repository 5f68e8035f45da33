"""captcha-exporter's monitoring mixin: alert rules, recording rules and Grafana dashboards from one config.

It follows the monitoring-mixins convention (kubernetes-mixin, node-mixin) with
a Python generator in place of jsonnet: ``mixin/config.py`` is the config
(``_config``), and these three functions are the mixin's outputs::

    prometheus_alerts(config)   -> {"groups": [...]}     (prometheusAlerts)
    prometheus_rules(config)    -> {"groups": [...]}     (prometheusRules)
    grafana_dashboards(config)  -> {file name: dashboard} (grafanaDashboards)

``python -m mixin`` writes them, with the default config, to the files the
repository ships (and a PrometheusRule and a dashboards ConfigMap for
deploy/kubernetes/); ``--config FILE`` applies a team's overrides, ``--out DIR``
writes elsewhere, ``--check`` reports files that differ from what the mixin makes.
"""

from mixin.alerts import prometheus_alerts
from mixin.dashboards import grafana_dashboards
from mixin.rules import prometheus_rules

__all__ = ["grafana_dashboards", "prometheus_alerts", "prometheus_rules"]
