"""What hostile or careless configs cost: `check-config`, then rendering `/config`, each in a process
of its own (wall time, and peak RSS as GNU time reports it).

    python bench/config_limits.py                      # this tree's exporter
    python bench/config_limits.py --source DIR         # another tree's (e.g. `git archive main exporter`)

Inputs: a 50 MB config, 10,000 targets (near the 100,000-value limit), a 3 KB file of aliases that stands for 10 MB of
text, a 22 KB file of aliases that stands for a million values, and 250 nested brackets.  Not run
by the tests: it is a measurement, reported with its command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"
TIMEOUT = 300.0


def aliases(items: int, options: int, value: str) -> str:
    """torrc options that are all one list of aliases of one value."""
    listed = ", ".join(["&v " + value] + ["*v"] * (items - 1))
    return TARGET + f"tor:\n  torrc:\n    Opt0: &list [{listed}]\n" + "".join(
        f"    Opt{n}: *list\n" for n in range(1, options))


def many_targets(count: int) -> str:
    return "targets:\n" + "".join(f"  - {{name: t{n}, url: 'https://s{n}.example/'}}\n" for n in range(count))


CASES = {
    "50 MB: a million targets": lambda: many_targets(1_000_000),
    "10,000 targets (near the limit)": lambda: many_targets(10_000),
    "3 KB of aliases (10 MB of text)": lambda: aliases(100, 100, "x" * 1000),
    "22 KB of aliases (1M values)": lambda: aliases(1000, 1000, "x"),
    "250 nested brackets": lambda: "targets: " + "[" * 250 + "]" * 250 + "\n",
}

RENDER = ("import sys; from exporter.config import load_config, config_yaml; "
          "print(len(config_yaml(load_config(sys.argv[1]))))")


def measure(command: list[str], source: Path) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MiB, exit status, last line of output) of one process, its peak RSS as
    GNU time reports it (this process's own ru_maxrss would count the fork of a big parent)."""
    env = dict(os.environ, PYTHONPATH=str(source))
    with tempfile.NamedTemporaryFile() as peak:
        started = time.monotonic()
        try:
            done = subprocess.run(["/usr/bin/time", "-o", peak.name, "-f", "%M", *command], cwd=source, env=env,
                                  capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return TIMEOUT, 0.0, -1, "timed out"
        seconds = time.monotonic() - started
        rss = int(Path(peak.name).read_text().split()[-1]) / 1024
    lines = (done.stdout + done.stderr).strip().splitlines()
    return seconds, rss, done.returncode, (lines[-1] if lines else "")[:110]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the directory holding the exporter package to measure (default: this tree)")
    args = parser.parse_args()
    source = args.source.resolve()
    with tempfile.TemporaryDirectory() as directory:
        for name, make in CASES.items():
            path = Path(directory) / "config.yaml"
            path.write_text(make())
            size = path.stat().st_size
            seconds, rss, status, line = measure([sys.executable, "-m", "exporter", "check-config", str(path)],
                                                 source)
            print(f"{name:34} {size / 1e3:9.0f} KB  check-config {seconds:6.2f} s {rss:6.0f} MiB  exit {status}: {line}")
            if status == 0:
                seconds, rss, status, line = measure([sys.executable, "-c", RENDER, str(path)], source)
                shown = f"{line} characters" if status == 0 else line
                print(f"{'':34} {'':12}  /config      {seconds:6.2f} s {rss:6.0f} MiB  {shown}")


if __name__ == "__main__":
    main()
