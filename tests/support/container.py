"""Run a built image's filesystem (tests/support/image.py) the way a container runtime runs it (tests only).

As Docker and Kubernetes do here: the root is the image's layers, read-only (an
overlay with no upper layer); /tmp is a tmpfs and the image's volume a
writable directory of the host; /dev/shm is a 1 GiB tmpfs (compose's
``shm_size``); the entrypoint is PID 1 of a PID namespace of its own (``unshare
--pid --fork``), runs as the image's USER with no capabilities, no way to gain
any (``no_new_privs``, as Kubernetes' ``allowPrivilegeEscalation: false``) and,
when given, under a seccomp profile loaded just before it starts.  The root is
entered with pivot_root, as runc does (tests/support/enter.py).  It shares
the host's network namespace: the tests run inside ``unshare --net`` already.
Like Docker's "init layer", a layer on top of the image holds the files a
runtime provides: /etc/hosts (selenium finds chromedriver at ``localhost``),
/etc/hostname and an empty /etc/resolv.conf.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support.image import PATH, Image

ENTER = Path(__file__).with_name("enter.py")
WITHOUT_USERNS = Path(__file__).with_name("without_userns.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # with Debian's python3-seccomp


@dataclass
class Container:
    process: subprocess.Popen
    log: Path

    def pid1(self) -> int:
        """The host's PID of the container's PID 1: the descendant that is PID 1 of its namespace."""
        queue = [self.process.pid]
        while queue:
            pid = queue.pop(0)
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            if next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1] == "1":
                return pid
            queue += map(int, children)
        raise ProcessLookupError("the container has no PID 1 (it has ended)")

    def processes(self) -> dict[int, str]:
        """Host PID → command line of PID 1 and every descendant, also those in PID namespaces below
        (Chromium's sandbox gives its zygote and renderers one of their own)."""
        found, queue = {}, [self.pid1()]
        while queue:
            pid = queue.pop()
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                for task in os.listdir(f"/proc/{pid}/task"):  # a thread's children are listed under it
                    queue += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:
                continue
        return found

    def stop(self) -> int:
        """SIGTERM to PID 1 (as ``docker stop``), then SIGKILL after 30 s."""
        if self.process.poll() is None:
            try:
                os.kill(self.pid1(), 15)
            except (OSError, ProcessLookupError):
                pass
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self._dump_exporter_stacks()
                self.process.kill()
        return self.process.wait(30)

    def _dump_exporter_stacks(self) -> None:
        """SIGUSR1 to the exporter: it writes every thread's stack to its log (what it was stuck in)."""
        for pid, command in self.processes().items():
            if " -m exporter " in f" {command} " or "captcha-exporter" in command:
                try:
                    os.kill(pid, signal.SIGUSR1)
                except OSError:
                    continue
        time.sleep(2)


def _init_layer(path: Path) -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    (path / "etc/hostname").write_text("captcha-exporter\n")
    (path / "etc/resolv.conf").write_text("")
    return path


def start(image: Image, mountpoint: Path, volume: Path, config: Path, arguments: list[str] | None = None,
          seccomp: Path | None = None, user_namespaces: bool = True) -> Container:
    """Start the image's ENTRYPOINT + CMD (``arguments`` replace CMD) with ``config`` at the image's config path."""
    user = image.user.partition(":")[0]
    passwd = {entry.split(":")[0]: entry.split(":") for entry in
              (image.layer / "etc/passwd").read_text().splitlines() if entry}
    uid, gid, home = passwd[user][2], passwd[user][3], passwd[user][5]
    os.chown(volume, int(uid), int(gid))
    root = mountpoint
    init = _init_layer(mountpoint.with_name(mountpoint.name + "-init"))
    script = [
        "set -eu",
        f"mount -t overlay overlay -o ro,lowerdir={init}:{image.layer}:{image.base} {root}",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {root}/tmp",
        f"mount --bind {volume} {root}{image.volumes[0]}",
        f"mount --bind {config} {root}/etc/captcha-exporter/config.yaml",
        f"mount -o remount,bind,ro {root}/etc/captcha-exporter/config.yaml",
        f"mount -t proc -o nosuid,nodev,noexec proc {root}/proc",
        f"mount --rbind /sys {root}/sys",
        f"mount --rbind /dev {root}/dev",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev,size=1g shm {root}/dev/shm",
    ]
    environment = {"PATH": PATH, "HOME": home, "HOSTNAME": "captcha-exporter", **image.env}
    command = [*image.entrypoint, *(image.cmd if arguments is None else arguments)]
    enter = [SYSTEM_PYTHON, str(ENTER), str(root), str(seccomp or "-"),
             "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
             "--inh-caps=-all", "--bounding-set=-all", "env", "-i", f"--chdir={image.workdir}",
             *(f"{k}={v}" for k, v in environment.items()), *command]
    script.append("exec " + shlex.join(enter))
    runtime = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "sh", "-c", "\n".join(script)]
    if not user_namespaces:
        runtime = [sys.executable, str(WITHOUT_USERNS), *runtime]
    log = volume.parent / f"{volume.name}.log"
    process = subprocess.Popen(runtime, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Container(process, log)

