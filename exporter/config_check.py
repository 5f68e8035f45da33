"""`captcha-exporter check-config FILE`: validate a config without starting anything.

Exit status 0 and a one-line summary on stdout when the file is valid; exit
status 1 and the one-line error (``FILE:LINE: key.path: message``) on stderr
when it is not.
"""

from __future__ import annotations

import sys

from exporter.config import FETCHER_KINDS, Config, ConfigError, load_config
from exporter.config_yaml import format_duration


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the YAML config file to check")


def run(args) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({summary(config)})")
    return 0


def summary(config: Config) -> str:
    """``3 targets, fetchers http+chromium, tor launch, every 10m, 2 lanes``."""
    fetchers = sorted({kind for target in config.targets for kind in target.fetchers}, key=FETCHER_KINDS.index)
    schedule = config.schedule
    when = f"cron '{schedule.cron}'" if schedule.cron else f"every {format_duration(schedule.interval)}"
    parts = [
        f"{len(config.targets)} target{'s' if len(config.targets) != 1 else ''}",
        f"fetchers {'+'.join(fetchers)}",
        f"tor {config.tor.mode}",
        when,
        "lanes chosen from CPUs and memory" if schedule.concurrency is None
        else f"{schedule.concurrency} lane{'s' if schedule.concurrency != 1 else ''}",
    ]
    if config.detect_signatures:
        parts.append(f"{len(config.detect_signatures)} custom signatures")
    return ", ".join(parts)
