"""deploy/seccomp/chromium.json, loaded with libseccomp as a container runtime would (tests/support/seccomp_exec.py)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "deploy/seccomp/chromium.json"
SECCOMP_EXEC = ROOT / "tests/support/seccomp_exec.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-seccomp
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="tests/run runs the tests as root"),
    pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True,
                                      check=False).returncode != 0, reason="needs Debian's python3-seccomp"),
]


def confined(*command: str) -> list[str]:
    return [SYSTEM_PYTHON, str(SECCOMP_EXEC), str(PROFILE), *command]


def test_user_and_network_namespaces_pass_and_a_mount_namespace_does_not():
    """Chromium's sandbox makes user, PID and network namespaces; nothing here needs a mount namespace."""
    script = ("unshare --user --map-root-user --net --pid --fork true && echo user+net+pid; "
              "unshare --user --map-root-user --mount true 2>/dev/null && echo user+mount; true")
    unconfined = subprocess.run([*NOBODY, "sh", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert unconfined.stdout.split() == ["user+net+pid", "user+mount"]
    profiled = subprocess.run(confined(*NOBODY, "sh", "-c", script), capture_output=True, text=True, timeout=60,
                              check=True)
    assert profiled.stdout.split() == ["user+net+pid"]


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_chromium_runs_sandboxed_under_the_profile():
    home = Path(tempfile.mkdtemp(prefix="seccomp-chromium-"))
    try:
        os.chown(home, 65534, 65534)
        page = subprocess.run(confined(*NOBODY, "env", f"HOME={home}", "chromium", "--headless=new",
                                       f"--user-data-dir={home}/profile", "--dump-dom",
                                       "data:text/html,<p>sandboxed</p>"),
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert "<p>sandboxed</p>" in page.stdout, page.stderr[-2000:]
    assert "No usable sandbox" not in page.stderr and "--no-sandbox" not in page.stderr
