"""Helpers shared by the tests: value builders (spine_values), the running exporter and Prometheus
(exporter_process, prometheus_process), the invariants e2e tests check, and the PromQL catalog.

``pyproject.toml`` puts ``tests/`` on pytest's path, so tests import them as ``from support import …``.
"""
