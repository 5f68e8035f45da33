"""Run a command under a Docker-format seccomp profile, as a container runtime would load it (tests only).

``/usr/bin/python3 tests/support/seccomp_exec.py PROFILE.json COMMAND...``: needs Debian's
python3-seccomp (libseccomp's bindings, for the system Python).  Like runc, names
libseccomp does not know on this architecture are skipped, ``SCMP_CMP_MASKED_EQ``
takes ``value`` as the mask and ``valueTwo`` as the datum, and several rules for one
syscall allow it when any matches.  Conditions on capabilities or kernel versions
(``includes``/``excludes``) are not supported: the profile must not use them.
"""

from __future__ import annotations

import errno
import json
import os
import sys

import seccomp

OPERATORS = {"SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
             "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_GT": seccomp.GT,
             "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}


def action(name: str, errno_ret: int | None):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    raise ValueError(f"unsupported action {name}")


def load(profile: dict) -> None:
    rules = seccomp.SyscallFilter(defaction=action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    for rule in profile["syscalls"]:
        if rule.get("includes") or rule.get("excludes"):
            raise ValueError("conditional rules (includes/excludes) are not supported")
        args = [seccomp.Arg(arg["index"], OPERATORS[arg["op"]], arg["value"], arg.get("valueTwo", 0))
                for arg in rule.get("args", [])]
        for name in rule["names"]:
            try:
                rules.add_rule(action(rule["action"], rule.get("errnoRet")), name, *args)
            except (ValueError, RuntimeError):
                continue  # not a syscall of this architecture
    rules.load()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: seccomp_exec.py PROFILE.json COMMAND...", file=sys.stderr)
        return 2
    with open(argv[0]) as file:
        load(json.load(file))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
