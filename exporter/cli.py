"""The `captcha-exporter` command: one subcommand per module that owns it.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": ("exporter.app", "probe targets through Tor exits and serve /metrics (the main job)"),
    "check-config": ("exporter.config_check", "validate a config file; exit 0 if valid, 1 if not"),
    "classify": ("exporter.detect.cli", "classify saved responses (HAR or HTML files)"),
    "testbed": ("exporter.testbed.cli", "run the private Tor network and edge web server"),
    "demo": ("exporter.demo", "the test bed plus the exporter (and Prometheus when installed)"),
    "probe": ("exporter.debug", "one probe now, with its log, verdict, metrics and configuration"),
}


def main(argv: list[str] | None = None) -> int:
    from exporter import __doc__ as summary
    from exporter import __version__

    parser = argparse.ArgumentParser(prog="captcha-exporter", description=summary)
    parser.add_argument("--version", action="version", version=f"captcha-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = _module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        module.add_arguments(command)
    args = parser.parse_args(argv)
    try:
        return _module(args._module).run(args)
    except KeyboardInterrupt:
        return 130


def _module(name: str):
    return importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
