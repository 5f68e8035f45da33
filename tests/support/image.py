"""The container image's filesystem without Docker: debootstrap, then the Dockerfile's own steps in a chroot.

No Docker engine runs where this project is tested, and podman or buildah
would need a registry for the base image.  So the image is built from Debian
packages alone: debootstrap makes the Debian the runtime stage starts FROM,
and that stage's instructions then run as Docker runs them: RUN in a chroot
(with /proc, /sys and /dev), COPY from the build context, WORKDIR, ENV, ARG;
USER, ENTRYPOINT, CMD, VOLUME and HEALTHCHECK are kept for whoever runs the
image (tests/support/container.py).  ``COPY --from=downloads`` (Tor Browser and
geckodriver, fetched at build time) needs the internet: those steps are
skipped, and ``Image.skipped`` says so.

Two halves, because the tests run without a network:

- the base (``python tests/support/image.py base``, run by .ci/install): debootstrap and
  the steps before the first COPY from the build context (the apt-get of Debian
  packages), plus a wheelhouse of the Python dependencies (``pip download``).
  It is cached under ``$CAPTCHA_IMAGE_CACHE`` (default /var/cache/captcha-exporter-image)
  by a key of everything it is made from: those steps, this file, pyproject.toml and the
  Debian suite; a base older than a week is built again (security updates);
- the rest (offline, by the test): in an overlay on the base, the exporter's sources,
  pip from the wheelhouse (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``), the user, the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SUITE = "bookworm"  # the runtime stage's FROM, debian:12.x-slim
MIRROR = "http://deb.debian.org/debian"
SOURCES = (f"deb {MIRROR} {SUITE} main\ndeb {MIRROR} {SUITE}-updates main\n"
           f"deb http://deb.debian.org/debian-security {SUITE}-security main\n")
CACHE = Path(os.environ.get("CAPTCHA_IMAGE_CACHE", "/var/cache/captcha-exporter-image"))
KEEP_DAYS = 14  # cached bases of other keys (other checkouts) are dropped after this long unused
REBUILD_DAYS = 7
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Step:
    op: str
    argument: str
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def from_context(self) -> bool:
        return self.op == "COPY" and "from" not in self.flags


@dataclass
class Image:
    """A built filesystem: the base and the overlay layer on it, and what the Dockerfile says about running it."""

    base: Path
    layer: Path
    user: str = "root"
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def instructions(text: str) -> list[Step]:
    """Dockerfile instructions, continuation lines joined, comments dropped, ``--flag=value`` split off."""
    steps, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        op, _, argument = (pending + line).strip().partition(" ")
        pending, flags = "", {}
        while match := re.match(r"--(\w+)=(\S+)\s+", argument):
            flags[match.group(1)] = match.group(2)
            argument = argument[match.end():]
        steps.append(Step(op.upper(), argument.strip(), flags))
    return steps


def runtime_stage(steps: list[Step]) -> tuple[dict[str, str], list[Step]]:
    """The build arguments' defaults and the last stage's steps (after its FROM)."""
    args = {}
    for step in steps:
        if step.op == "ARG" and "=" in step.argument:
            name, _, value = step.argument.partition("=")
            args.setdefault(name, value)
    last_from = max(i for i, step in enumerate(steps) if step.op == "FROM")
    return args, steps[last_from + 1:]


def split_stage(stage: list[Step]) -> tuple[list[Step], list[Step]]:
    """(base, rest): the rest starts at the first COPY from the build context."""
    first = next(i for i, step in enumerate(stage) if step.from_context)
    return stage[:first], stage[first:]


def base_key(base_steps: list[Step]) -> str:
    parts = [SUITE, MIRROR, Path(__file__).read_text(), (ROOT / "pyproject.toml").read_text(),
             *(f"{s.op} {s.flags} {s.argument}" for s in base_steps)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base(cache: Path = CACHE, log=print) -> Path:
    """The cached base (``rootfs/`` and ``wheelhouse/``), built first if needed (needs the network)."""
    args, stage = runtime_stage(instructions(DOCKERFILE.read_text()))
    base_steps, _ = split_stage(stage)
    done = cache / base_key(base_steps)
    if (done / "complete").exists() and time.time() - (done / "complete").stat().st_mtime < REBUILD_DAYS * 86400:
        return done
    cache.mkdir(parents=True, exist_ok=True)
    _forget_old(cache)
    partial = done.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    started = time.monotonic()
    log(f"debootstrap {SUITE} into {partial / 'rootfs'}")
    subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(partial / "rootfs"), MIRROR], check=True,
                   stdout=(partial / "build.log").open("wb"))
    (partial / "rootfs/etc/apt/sources.list").write_text(SOURCES)
    log(f"the Dockerfile's {len(base_steps)} base steps")
    image = Image(partial / "rootfs", partial / "rootfs")
    _run_steps(image, base_steps, args, layer=None)
    log("pip download: the Python dependencies' wheelhouse")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial / "wheelhouse"),
                    str(ROOT), "setuptools>=68", "wheel"], check=True)
    (partial / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    if done.exists():  # a week old: the new one takes its place
        stale = done.with_suffix(".stale")
        done.rename(stale)
        shutil.rmtree(stale)
    partial.rename(done)
    log(f"base ready in {time.monotonic() - started:.0f} s: {done}")
    return done


def _forget_old(cache: Path) -> None:
    """Drop cached bases nobody has used for KEEP_DAYS (other keys may belong to other checkouts)."""
    for entry in cache.iterdir():
        if time.time() - entry.stat().st_mtime > KEEP_DAYS * 86400:
            shutil.rmtree(entry, ignore_errors=True)


def build(work: Path, cache: Path = CACHE) -> Image:
    """The whole image's filesystem: the cached base, and the rest of the steps in ``work/layer`` (offline)."""
    cached = cache / base_key(split_stage(runtime_stage(instructions(DOCKERFILE.read_text()))[1])[0])
    if not (cached / "complete").exists():
        raise FileNotFoundError(f"no image base at {cached}: build it with the network, "
                                "`python tests/support/image.py base` (.ci/install does)")
    os.utime(cached)
    args, stage = runtime_stage(instructions(DOCKERFILE.read_text()))
    base_steps, rest = split_stage(stage)
    image = Image(cached / "rootfs", work / "layer")
    image.layer.mkdir(parents=True)
    (work / "overlay-work").mkdir()
    _record(image, base_steps, args)
    _run_steps(image, rest, args, layer=work, wheelhouse=cached / "wheelhouse")
    return image


def _record(image: Image, steps: list[Step], args: dict[str, str]) -> None:
    """What the steps say about running the image and where the next steps run (the base steps ran
    where the base was built)."""
    for step in steps:
        if step.op == "WORKDIR":
            image.workdir = _substitute(step.argument, {**args, **image.env})
        else:
            _apply_metadata(image, step, args)


def _apply_metadata(image: Image, step: Step, args: dict[str, str]) -> bool:
    """Take a step that only describes the image; False for a step that changes its files."""
    argument = _substitute(step.argument, {**args, **image.env})
    if step.op == "USER":
        image.user = argument
    elif step.op == "ENV":
        name, _, value = argument.partition("=")
        image.env[name] = value.strip('"')
    elif step.op == "ARG":
        name, _, value = argument.partition("=")
        args.setdefault(name, value)
    elif step.op in ("ENTRYPOINT", "CMD"):
        setattr(image, step.op.lower(), json.loads(argument))
    elif step.op == "VOLUME":
        image.volumes = json.loads(argument)
    elif step.op == "HEALTHCHECK":
        image.healthcheck = json.loads(argument.partition(" CMD ")[2])
    elif step.op in ("EXPOSE", "LABEL"):
        pass
    else:
        return False
    return True


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def _run_steps(image: Image, steps: list[Step], args: dict[str, str], layer: Path | None,
               wheelhouse: Path | None = None) -> None:
    """Run the steps as one shell script in a mount namespace of its own: the root is the base itself
    (``layer`` None) or an overlay of ``layer/layer`` on it, with /proc, /sys and /dev as a build has."""
    root = image.base if layer is None else layer / "root"
    script = ["set -eu"]
    if layer is not None:
        root.mkdir()
        script.append(f"mount -t overlay overlay -o lowerdir={image.base},upperdir={image.layer},"
                      f"workdir={layer / 'overlay-work'} {root}")
    script += [f"mount -t proc proc {root}/proc", f"mount --rbind /sys {root}/sys", f"mount --rbind /dev {root}/dev",
               f"cp /etc/resolv.conf {root}/etc/resolv.conf"]
    if wheelhouse is not None:
        script += [f"mkdir -p {root}/wheelhouse", f"mount --bind {wheelhouse} {root}/wheelhouse"]
    workdir = image.workdir
    for step in steps:
        if _apply_metadata(image, step, args):
            continue
        argument = _substitute(step.argument, {**args, **image.env})
        if step.op == "WORKDIR":
            workdir = argument
            script.append(f"mkdir -p {root}{workdir}")
        elif step.op == "COPY" and not step.from_context:
            image.skipped.append(f"COPY --from={step.flags['from']} {argument} (needs the internet)")
        elif step.op == "COPY":
            *sources, target = shlex.split(argument)
            target = target if target.startswith("/") else f"{workdir.rstrip('/')}/{target}"
            directory = target if target.endswith(("/", "/.")) else os.path.dirname(target)
            script.append(f"mkdir -p {shlex.quote(root.as_posix() + directory)}")
            for source in sources:
                script.append(f"cp -a {shlex.quote(str(ROOT / source))} {shlex.quote(root.as_posix() + target)}")
        elif step.op == "RUN":
            environment = {"PATH": PATH, "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive", **image.env}
            if wheelhouse is not None:
                environment.update(PIP_NO_INDEX="1", PIP_FIND_LINKS="/wheelhouse", PIP_DISABLE_PIP_VERSION_CHECK="1")
            env = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
            command = f"cd {shlex.quote(workdir)} && {argument}"
            script.append(f"mkdir -p {root}{workdir}")  # as Docker makes a missing working directory
            script.append(f"chroot {root} env -i {env} /bin/sh -c {shlex.quote(command)}")
        else:
            raise ValueError(f"the image builder does not know the Dockerfile instruction {step.op}")
        image.workdir = workdir
    script.append(f"rm -f {root}/etc/resolv.conf")
    if wheelhouse is not None:
        script.append(f"umount {root}/wheelhouse && rmdir {root}/wheelhouse")
    log = (layer or image.base.parent) / "build.log"
    with log.open("ab") as output:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
                              stdout=output, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"a Dockerfile step failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")


if __name__ == "__main__":
    if sys.argv[1:] != ["base"]:
        sys.exit("usage: python tests/support/image.py base   (as root, with the network)")
    print(base())
