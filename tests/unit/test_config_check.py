"""`captcha-exporter check-config`: exit status, one line of output, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.hostile_configs import CASES, UNPRIVILEGED, shared_directory

from exporter.cli import main
from exporter.config_check import format_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_valid_config_prints_a_summary(capsys):
    assert main(["check-config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{EXAMPLE}: OK (2 targets, fetchers http+chromium, tor launch, every 10m, lanes chosen from CPUs, memory and probes)\n"
    assert err == ""


def test_summary_names_cron_and_custom_signatures(tmp_path, capsys, monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "exporter.detect.signatures", types.SimpleNamespace(check_custom=lambda raw: []))
    path = tmp_path / "c.yaml"
    path.write_text("targets: [{name: a, url: 'http://a/', fetchers: [firefox]}]\n"
                    "schedule: {cron: '*/5 * * * *', concurrency: 1}\n"
                    "tor: {mode: connect}\ndetect: {signatures: [{name: x}, {name: y}]}\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: OK (1 target, fetchers firefox, tor connect, cron '*/5 * * * *', 1 lane, 2 custom signatures)\n")


def test_summary_names_variants_after_their_kind(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("targets: [{name: a, url: 'http://a/', fetchers: [chromium-de, http, chromium, ff-rfp]}]\n"
                    "fetchers:\n  variants:\n    chromium-de: {kind: chromium, arguments: [--lang=de-DE]}\n"
                    "    ff-rfp: {kind: firefox, prefs: {privacy.resistFingerprinting: true}}\n")
    assert main(["check-config", str(path)]) == 0
    assert "fetchers http+chromium+chromium-de+ff-rfp," in capsys.readouterr().out


def test_an_expectation_that_can_never_hold_is_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("targets:\n  - name: a\n    url: http://a/\n    expect: {status: 302, title: Home}\n")
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().err == (f"{path}:4: targets[0].expect.status: a probe judges the page its redirects "
                                       "lead to, which never has status 302; expect a status from 200-299 or "
                                       "400-599\n")


def test_invalid_config_prints_the_error_to_stderr(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("targets:\n  - name: a\n    url: gopher://a/\n")
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    expected = "targets[0].url: expected an absolute http:// or https:// URL with a host, got 'gopher://a/'"
    assert err == f"{path}:3: {expected}\n"


@pytest.mark.parametrize(("seconds", "text"), [(600, "10m"), (90, "90s"), (7200, "2h"), (86400, "1d"), (1.5, "1.5s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_command_never_shows_a_traceback(tmp_path):
    """As a real process: a missing file, a directory, binary garbage, a bad value, a valid file."""
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: []\n")
    cases = [
        (tmp_path / "absent.yaml", 1, f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"),
        (tmp_path, 1, f"{tmp_path}: cannot read: Is a directory"),
        (garbage, 1, f"{garbage}:2: not UTF-8 text"),  # byte 0x80 follows the first newline
        (bad, 1, f"{bad}:1: targets: needs at least one target"),
        (EXAMPLE, 0, ""),
    ]
    for path, status, error in cases:
        done = subprocess.run([sys.executable, "-m", "exporter", "check-config", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (status, error + "\n" if error else ""), path
        assert "Traceback" not in done.stdout + done.stderr


@pytest.fixture
def shared_dir():
    with shared_directory("check-config-") as directory:
        yield directory


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_files_give_one_line_not_a_traceback(case, shared_dir):
    """As a real process and as an unprivileged user (root may read any directory)."""
    path = case.write(shared_dir)
    done = subprocess.run([*UNPRIVILEGED, sys.executable, "-m", "exporter", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.endswith("\n") and "\n" not in done.stderr[:-1], done.stderr
    assert done.stderr.startswith(f"{path}:{case.line}: {case.path}: "), done.stderr
    assert case.message in done.stderr
