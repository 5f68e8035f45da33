"""What the web reads: readiness and status come from the owners' state, "started" is the exporter's start."""

import time
import types

from support.spine_values import target

from exporter.config import Config, ExitSelection, parse_config
from exporter.metrics import FetcherInfo
from exporter.planner import ExitPlanner
from exporter.shard import Shard
from exporter.supervisor import TorSupervisor
from exporter.view import ExporterView, fetcher_infos


def view(started: float, targets=("news",)) -> ExporterView:
    config = Config(targets=tuple(target(name) for name in targets))
    supervisor = TorSupervisor(lambda: config.tor, lambda: 1, lambda session: None)
    return ExporterView(None, lambda: config, Shard(0, 1), ExitPlanner(Shard(0, 1), ExitSelection), supervisor,
                        store=None, reload=lambda: (True, ""), reload_status=lambda: (True, 0.0),
                        pairs=lambda: (("news", "http"),), schedules=lambda: (), started=started)


def test_started_is_when_the_exporter_started_not_when_its_module_was_imported():
    started = time.time() + 3600
    assert view(started).status()["started"] == time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))


def test_not_ready_before_tor_says_why():
    assert view(time.time()).ready() == (False, "connecting to tor")
    assert view(time.time()).snapshot().pairs == (("news", "http"),)


def test_fetcher_info_names_the_running_browser_of_each_fetcher_and_its_variant_settings():
    config = parse_config("""
targets: [{name: a, url: 'http://a/', fetchers: [http, chromium, chromium-de]}]
fetchers: {variants: {chromium-de: {kind: chromium, arguments: [--lang=de-DE]}}}
""")
    session = types.SimpleNamespace(fetchers={
        "http": types.SimpleNamespace(name="http", identity=("python-requests", "2.32.3")),
        "chromium": types.SimpleNamespace(name="chromium", identity=None),  # not started yet
        "chromium-de": types.SimpleNamespace(name="chromium-de", identity=("chrome", "131.0.1"), sandbox="setuid")})
    assert fetcher_infos(config, session) == (
        FetcherInfo("http", "http", "python-requests", "2.32.3", ""),
        FetcherInfo("chromium-de", "chromium", "chrome", "131.0.1", "arguments=--lang=de-DE", "setuid"))
    assert fetcher_infos(config, None) == ()


def test_config_text_is_rendered_once_per_config(monkeypatch):
    """The landing page shows /config on every request; a big config renders in seconds."""
    import exporter.view as view_module

    renders = []
    monkeypatch.setattr(view_module, "config_yaml", lambda config: renders.append(config) or "targets: []\n")
    shown = view(time.time())
    assert shown.config_text() == shown.config_text() == "targets: []\n"
    assert len(renders) == 1


def test_the_status_names_at_most_50_targets():
    assert view(time.time(), [f"t{n}" for n in range(50)]).status()["targets"].endswith(", t48, t49")
    named = view(time.time(), [f"t{n}" for n in range(10_000)]).status()["targets"]
    assert named.startswith("t0, t1, ") and named.endswith(", t49 and 9950 more")
