"""The import directions of docs/architecture.md hold, and the check (import-linter) fails when one is broken."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the [test] extra")

# one import against each contract: (module file, the import added to it, the contract it breaks)
VIOLATIONS = [
    ("exporter/app.py", "import testbed.ports", "the exporter never imports the test bed"),
    ("exporter/values.py", "from exporter import config", "values.py, which every part imports, imports no part"),
    ("exporter/tor/relay.py", "import exporter.fetch.http", "tor/ and detect/ do not import fetch/"),
    ("exporter/fetch/http.py", "import exporter.tor.control", "fetch/, detect/ and change/ do not import tor/"),
    ("exporter/web.py", "import exporter.app", "the web endpoint reads the exporter through its View"),
]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env={"PYTHONPATH": str(tree)},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_tree_keeps_every_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(VIOLATIONS)} kept, 0 broken" in done.stdout


def test_each_contract_fails_on_a_violation(tmp_path):
    for package in ("exporter", "testbed"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for path, statement, _ in VIOLATIONS:
        with (tmp_path / path).open("a") as module:
            module.write(f"\n{statement}  # a deliberate violation\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert len(broken) == len(VIOLATIONS)
    for _, _, contract in VIOLATIONS:
        assert any(line.startswith(contract) for line in broken), done.stdout
