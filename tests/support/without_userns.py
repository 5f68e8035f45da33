"""Run a command where no process can make a user namespace, as on hosts that forbid them (tests only).

``python tests/support/without_userns.py COMMAND...``, as root.  The command runs in a
user namespace of its own that maps every uid and gid to itself (so root is
still uid 0 and file ownership means what it did), with the namespace's
``user.max_user_namespaces`` set to 0: like ``sysctl user.max_user_namespaces=0``
on the host, but for this command and its children only.  Kernel fact: that
limit is per user namespace and binds the namespaces below it too.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main(argv: list[str]) -> int:
    if os.geteuid() != 0 or not argv:
        print("usage (as root): without_userns.py COMMAND...", file=sys.stderr)
        return 2
    ready_read, ready_write = os.pipe()
    mapped_read, mapped_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_read)
        os.close(mapped_write)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(f"unshare: {os.strerror(ctypes.get_errno())}")
        os.write(ready_write, b"1")
        os.read(mapped_read, 1)  # the parent has written our uid and gid maps
        with open("/proc/sys/user/max_user_namespaces", "w") as limit:
            limit.write("0")
        os.execvp(argv[0], argv)
    os.close(ready_write)
    os.close(mapped_read)
    if os.read(ready_read, 1) == b"1":
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w") as mapping:
                mapping.write("0 0 4294967295\n")
        os.write(mapped_write, b"1")
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
