"""Chromium's sandbox: whether this machine can give it one, and as whom the browser runs.

Facts behind the code (Chromium's docs/linux/sandboxing.md and suid_sandbox.md):

- Chromium refuses to run as root unless told ``--no-sandbox``; as root, we run
  it as the unprivileged user ``nobody`` instead, with a ``HOME`` it owns.
- Its first choice is the namespace sandbox: each renderer in new user, PID and
  network namespaces.  That needs unprivileged user namespaces, which hosts
  take away with ``kernel.unprivileged_userns_clone=0`` (Debian),
  ``user.max_user_namespaces=0``, AppArmor
  (``kernel.apparmor_restrict_unprivileged_userns=1``, Ubuntu 23.10 on) or a
  seccomp filter: Docker's and containerd's default profiles refuse
  ``clone``/``unshare`` with ``CLONE_NEWUSER`` (deploy/seccomp/chromium.json
  allows it).
- Its fallback is the setuid helper ``chrome-sandbox`` beside the browser
  (Debian package chromium-sandbox).  It works only where setuid does: not
  under ``no_new_privs`` (Kubernetes ``allowPrivilegeEscalation: false``), not
  on a ``nosuid`` mount, and only with ``CAP_SYS_ADMIN`` in the bounding set.

Without either, Chromium cannot start; ``fetchers.chromium.sandbox: false``
runs it with ``--no-sandbox``, at the operator's word.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

UNPRIVILEGED_USER = "nobody"  # whom the browser runs as when the exporter is root
SETUID_HELPERS = (Path("/usr/lib/chromium/chrome-sandbox"),)  # Debian's chromium-sandbox
CAP_SYS_ADMIN = 21
NAMESPACES, SETUID, OFF = "namespaces", "setuid", "off"


class SandboxError(Exception):
    """Chromium cannot run sandboxed here; ``str()`` is one line saying what to change."""


@dataclass(frozen=True)
class Launch:
    """How browsers start: under which sandbox, as whom (None: as this process)."""

    sandbox: str  # NAMESPACES, SETUID or OFF
    user: pwd.struct_passwd | None = None

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("--no-sandbox",) if self.sandbox == OFF else ()

    def popen_options(self) -> dict:
        """subprocess.Popen arguments that start the driver (and so the browser) as ``user``."""
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        """Hand ``path`` (a browser's HOME, with everything in it) to the browser's user."""
        if self.user is None:
            return
        for directory, _, files in os.walk(path):
            for name in (directory, *(os.path.join(directory, file) for file in files)):
                os.chown(name, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)


def plan(sandbox: bool, binary: str | None = None) -> Launch:
    """The sandbox browsers will get; raises SandboxError (one line) when none can run."""
    if not sandbox:
        log.warning("Chromium runs without its sandbox (fetchers.chromium.sandbox: false): a page that takes "
                    "over a renderer gets the exporter's rights")
        return Launch(OFF)
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise SandboxError(f"running as root, Chromium must run as an unprivileged user, and there is no "
                               f"user {UNPRIVILEGED_USER!r}: create it, run the exporter as another user, or set "
                               "fetchers.chromium.sandbox: false to run Chromium without its sandbox") from None
    no_namespaces = why_no_user_namespaces(user)
    if no_namespaces is None:
        return Launch(NAMESPACES, user)
    no_helper = why_no_setuid_helper(binary)
    if no_helper is None:
        return Launch(SETUID, user)
    raise SandboxError(f"Chromium's sandbox cannot run here: no user namespaces ({no_namespaces}) and {no_helper}; allow "
                       "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
                       "user.max_user_namespaces > 0; in Docker or Kubernetes the seccomp profile "
                       "deploy/seccomp/chromium.json), or install Debian's chromium-sandbox where setuid works, "
                       "or set fetchers.chromium.sandbox: false to run Chromium without it")


def why_no_user_namespaces(user: pwd.struct_passwd | None) -> str | None:
    """None when ``user`` (None: we) can make a user namespace with a network namespace inside, as
    Chromium does; else why not."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    try:
        done = subprocess.run([unshare, "--user", "--map-root-user", "--net", "true"], capture_output=True,
                              text=True, timeout=10, check=False, **Launch(NAMESPACES, user).popen_options())
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {unshare}: {exc}"
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"unshare exited {done.returncode}"
    return None


def why_no_setuid_helper(binary: str | None) -> str | None:
    """None when Chromium's setuid helper can work for us; else why not."""
    if os.environ.get("CHROME_DEVEL_SANDBOX"):  # Chromium then looks nowhere else
        candidates = [Path(os.environ["CHROME_DEVEL_SANDBOX"])]
    else:  # beside the browser's executable; Debian's /usr/bin/chromium is a script that starts /usr/lib/chromium's
        beside = Path(os.path.realpath(shutil.which(binary) or binary)).parent if binary else None
        candidates = [*([beside / "chrome-sandbox"] if beside else []), *SETUID_HELPERS]
    helper = next((path for path in candidates if path.is_file()), None)
    if helper is None:
        return "no setuid helper chrome-sandbox (Debian package chromium-sandbox)"
    stat = helper.stat()
    if stat.st_uid != 0 or not stat.st_mode & 0o4000:
        return f"{helper} is not setuid root"
    if os.statvfs(helper).f_flag & os.ST_NOSUID:
        return f"{helper} is on a nosuid mount"
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    if status.get("NoNewPrivs", "0").strip() == "1":
        return f"{helper} cannot gain privileges under no_new_privs (e.g. allowPrivilegeEscalation: false)"
    if not int(status.get("CapBnd", "0").strip(), 16) >> CAP_SYS_ADMIN & 1:
        return f"{helper} needs CAP_SYS_ADMIN in the capability bounding set"
    return None
