"""What the web endpoint reads from the running exporter (``exporter.web.View``).

Readiness, the status lines, recent probes, the configuration in force, and the
snapshot the metrics collector renders at scrape time.  Everything here only
reads: web threads call it, and it takes one reference to each owner's state
(the config, the supervisor's session, the planner's consensus) and works on
that, so a reload or a new consensus mid-request cannot mix old and new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from exporter.config import FETCHER_KINDS, Config, config_yaml
from exporter.exposition import Exposition
from exporter.fetch.factory import settings_text
from exporter.metrics import FetcherInfo, Snapshot
from exporter.planner import ExitPlanner
from exporter.redact import BY_SHAPE, Redactor
from exporter.relays import RelayFacts
from exporter.report import latest_report
from exporter.shard import Shard
from exporter.store import Store
from exporter.supervisor import Session, TorSupervisor

RECENT_PROBES = 200  # shown on the landing page
STATUS_TARGETS = 50  # named in the status; /config has them all


class ExporterView:
    def __init__(self, exposition: Exposition, config: Callable[[], Config], shard: Shard,
                 planner: ExitPlanner, supervisor: TorSupervisor, store: Store,
                 reload: Callable[[], tuple[bool, str]], reload_status: Callable[[], tuple[bool, float]],
                 pairs: Callable[[], tuple[tuple[str, str], ...]],
                 schedules: Callable[[], tuple[tuple[str, float, int], ...]], started: float,
                 relays: RelayFacts | None = None):
        """``started`` is when the exporter started (the status page shows it)."""
        self.exposition = exposition
        self._config = config
        self._shard = shard
        self._planner = planner
        self._supervisor = supervisor
        self._store = store
        self.reload = reload
        self._reload_status = reload_status
        self._pairs = pairs
        self._schedules = schedules
        self._started = started
        self._relays = relays
        self._redacting: tuple[Config | None, Redactor] = (None, BY_SHAPE)
        self._rendered: tuple[Config | None, str] = (None, "")

    def snapshot(self) -> Snapshot:
        config, consensus, session = self._config(), self._planner.consensus, self._supervisor.session
        prober = session.prober if session else None
        reload_ok, reload_time = self._reload_status()
        return Snapshot(
            tor_up=self.ready()[0],
            # each replica exports its own exits; weights stay normalised over the whole consensus,
            # so per-replica coverage adds up across replicas
            exits=tuple(self._shard.owned(consensus.exits)) if consensus else (),
            valid_after=consensus.valid_after.timestamp() if consensus else None,
            tor_version=session.tor.version if session else "",
            pairs=self._pairs(),
            schedules=self._schedules(),
            window=config.schedule.window,
            in_flight=prober.in_flight if prober else 0,
            queued=prober.queued if prober else 0,
            reload_successful=reload_ok,
            reload_success_time=reload_time,
            plan=self._planner.plan(config.targets),
            backing_off=prober.backoff.skipped(time.time()) if prober else frozenset(),
            first_seen=self._relays.first_seen() if self._relays else {},
            onionoo_success_time=self._relays.onionoo_success_time if self._relays else None,
            fetchers=fetcher_infos(config, session),
        )

    def ready(self) -> tuple[bool, str]:
        session, consensus = self._supervisor.session, self._planner.consensus
        if session is None or session.prober is None:
            return False, self._redactor().text(self._supervisor.error or "not connected to tor")
        if not consensus or not consensus.exits:
            return False, "no exits in the consensus"
        targets = _count(len(self._config().targets), "target")
        return True, f"probing {targets} through {_count(len(self._planner.selected), 'exit')}"

    def status(self) -> dict[str, str]:
        config, consensus, session = self._config(), self._planner.consensus, self._supervisor.session
        tor = session.tor if session else None
        return {
            "tor": f"{tor.version} at {config.tor.control_host}:{config.tor.control_port}" if tor
            else self._redactor().text(self._supervisor.error),
            "consensus valid after": consensus.valid_after.isoformat() if consensus else "none",
            "exits in consensus": str(len(consensus.exits)) if consensus else "0",
            "exits selected": str(len(self._planner.selected)),
            "lanes": str(len(tor.lanes)) if tor else "0",
            "shard": f"{self._shard} of the exits",
            "targets": _names(config.targets),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self._started)),
        }

    def recent(self) -> list[dict]:
        redactor = self._redactor()
        return [redactor.data(record) for record in self._store.recent(RECENT_PROBES)]

    def probe(self, probe_id: str) -> dict | None:
        """The probe's record, redacted again by the config in force (a record may predate a secret)."""
        record = self._store.probe(probe_id)
        return None if record is None else self._redactor().data(record)

    def probes(self, limit: int, since: float | None, until: float | None, **equal: str | None) -> list[dict]:
        redactor = self._redactor()
        return [redactor.data(record) for record in self._store.probes(limit, since, until, **equal)]

    def evidence_dir(self) -> Path:
        return self._config().data_dir / "evidence"

    def latest_report(self) -> tuple[date, Path] | None:
        return latest_report(self._config().data_dir)

    def config_text(self) -> str:
        """/config, rendered once per config (the landing page shows it too)."""
        config = self._config()
        if self._rendered[0] is not config:
            self._rendered = (config, config_yaml(config))
        return self._rendered[1]

    def _redactor(self) -> Redactor:
        """The redactor of the config in force, made once per config."""
        config = self._config()
        if self._redacting[0] is not config:
            self._redacting = (config, Redactor.of(config))
        return self._redacting[1]


def _names(targets) -> str:
    shown = ", ".join(t.name for t in targets[:STATUS_TARGETS])
    return shown if len(targets) <= STATUS_TARGETS else f"{shown} and {len(targets) - STATUS_TARGETS} more"


def fetcher_infos(config: Config, session: Session | None) -> tuple[FetcherInfo, ...]:
    """captcha_fetcher_info of every fetcher of the session whose browser (or library) is known: a
    browser fetcher's once its first browser started."""
    infos = []
    for name, fetcher in (session.fetchers if session else {}).items():
        identity = fetcher.identity
        if identity is not None and name in (*config.fetchers.variants, *FETCHER_KINDS):
            kind, _ = config.fetchers.resolve(name)
            infos.append(FetcherInfo(fetcher.name, kind, *identity, settings_text(name, config.fetchers),
                                     getattr(fetcher, "sandbox", "")))
    return tuple(infos)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
