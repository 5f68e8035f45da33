"""Build facts for captcha_exporter_build_info: the version, and the source revision it was built from.

The revision is ``CAPTCHA_EXPORTER_REVISION`` when set (the container build
passes its git commit), else the commit of the git checkout the package runs
from, else ``unknown``.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


@functools.cache
def revision() -> str:
    given = os.environ.get("CAPTCHA_EXPORTER_REVISION", "").strip()
    if given:
        return given
    if not (CHECKOUT / ".git").exists():  # an installed package: whatever repository surrounds it is not ours
        return "unknown"
    try:
        done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=CHECKOUT, capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"
