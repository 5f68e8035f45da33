"""Enter a container's root as a runtime does, then run its entrypoint (tests only; as root, in a mount namespace).

``/usr/bin/python3 tests/support/enter.py ROOT PROFILE|- COMMAND...``: like runc's init,
from a process already in the container's namespaces, ``pivot_root`` to ROOT (not
chroot: the kernel refuses to make a user namespace in a chroot, which would deny
Chromium its sandbox), detach the old root, load the seccomp profile (``-``: none)
last, and exec COMMAND, found in the new root.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

from seccomp_exec import load

SYS_PIVOT_ROOT = 155  # x86_64
MNT_DETACH = 2


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: enter.py ROOT PROFILE|- COMMAND...", file=sys.stderr)
        return 2
    root, profile, command = argv[0], argv[1], argv[2:]
    rules = None
    if profile != "-":
        with open(profile) as file:  # a file of the host: read it before the host's root is gone
            rules = json.load(file)
    libc = ctypes.CDLL(None, use_errno=True)
    os.chdir(root)
    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:  # the old root ends up stacked on the new one
        raise OSError(ctypes.get_errno(), "pivot_root")
    if libc.umount2(b".", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "umount2 of the old root")
    os.chdir("/")
    if rules is not None:
        load(rules)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
