"""The `captcha-exporter` command: one subcommand per module that owns it.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``.
Only the module of the command being run is imported, so ``captcha-exporter run``
never loads the test bed (``testbed``, an optional extra) or its dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": ("exporter.app", "probe targets through Tor exits and serve /metrics (the main job)"),
    "check-config": ("exporter.config_check", "validate a config file; exit 0 if valid, 1 if not"),
    "classify": ("exporter.detect.cli", "classify saved responses (HAR or HTML files)"),
    "testbed": ("testbed.cli", "run the private Tor network and edge web server"),
    "demo": ("testbed.demo", "the test bed plus the exporter (and Prometheus when installed)"),
    "probe": ("exporter.debug", "one probe now, with its log, verdict, metrics and configuration"),
    "report": ("exporter.report", "write one UTC day's counts, rounded up to multiples of 8, safe to publish"),
    "healthcheck": ("exporter.healthcheck", "ask the local endpoint whether it is alive (or ready); for containers"),
}
TESTBED_HINT = "the test bed is not installed: pip install 'captcha-exporter[testbed]' from a source checkout"


def main(argv: list[str] | None = None) -> int:
    from exporter import __doc__ as summary
    from exporter import __version__

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="captcha-exporter", description=summary)
    parser.add_argument("--version", action="version", version=f"captcha-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        if name == chosen:  # the other commands' modules (and their dependencies) stay unloaded
            module = _module(module_name)
            if module is None:
                print(f"captcha-exporter {name}: {TESTBED_HINT}", file=sys.stderr)
                return 2
            module.add_arguments(command)
    args = parser.parse_args(argv)
    try:
        return _module(args._module).run(args)
    except KeyboardInterrupt:
        return 130


def _module(name: str):
    """The command's module; None when it belongs to the test bed and that is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if name.startswith("testbed.") and exc.name in ("testbed", "dnslib", "mmdb_writer", "cryptography"):
            return None
        raise


if __name__ == "__main__":
    sys.exit(main())
