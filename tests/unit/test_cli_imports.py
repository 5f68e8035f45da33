"""`captcha-exporter run` loads the exporter alone: no test-bed module and none of its dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

TESTBED_ONLY = ("testbed", "dnslib", "mmdb_writer")

LIST_MODULES = """
import json, sys
from exporter.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def imported_modules(*argv: str) -> set[str]:
    """Every module loaded by ``captcha-exporter ARGV`` in a fresh interpreter."""
    run = subprocess.run([sys.executable, "-c", LIST_MODULES, *argv], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_run_imports_no_testbed_module():
    modules = imported_modules("run", "--help")
    assert "exporter.app" in modules  # the command's own module was loaded: the check sees real imports
    assert not [m for m in modules if m.split(".")[0] in TESTBED_ONLY]


def test_the_testbed_command_does_import_the_testbed():
    modules = imported_modules("testbed", "up", "--help")
    assert "testbed.cli" in modules
