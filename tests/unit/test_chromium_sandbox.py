"""Chromium's sandbox: on by default, as an unprivileged user when we are root, refused in one line when impossible."""

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.config import ChromiumConfig
from exporter.fetch import browser_pool, sandbox
from exporter.fetch.chromium import ChromiumBrowser
from exporter.values import Lane

WITHOUT_USERNS = str(Path(__file__).parents[1] / "support" / "without_userns.py")
NOWHERE = Lane(0, "127.0.0.1", 9, 1)  # a SocksPort nobody listens on: data: URLs need none
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="tests/run runs the tests as root")
needs_chromium = pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.mark.browser
@needs_root
@needs_chromium
def test_as_root_chromium_runs_as_nobody_in_its_namespace_sandbox():
    launch = sandbox.plan(True)
    assert (launch.sandbox, launch.user.pw_name, launch.arguments) == ("namespaces", "nobody", ())
    browser = ChromiumBrowser(ChromiumConfig(), NOWHERE, None, launch)
    try:
        browser.driver.get("data:text/html,<p>sandboxed</p>")
        assert browser.driver.find_element("tag name", "p").text == "sandboxed"
        assert browser.home.stat().st_uid == launch.user.pw_uid
        processes = browser_pool.live_processes(browser.session_id, str(browser.home))
        main = browser.main_pid()
        renderers = [pid for pid in processes if "--type=renderer" in browser_pool.cmdline(pid)]
        assert main and renderers
        assert {status(pid)["Uid"].split()[0] for pid in processes} == {str(launch.user.pw_uid)}
        assert not any("--no-sandbox" in browser_pool.cmdline(pid) for pid in processes)
        for renderer in renderers:  # a user namespace of its own, and seccomp-bpf
            assert os.readlink(f"/proc/{renderer}/ns/user") != os.readlink(f"/proc/{main}/ns/user")
            assert status(renderer)["Seccomp"] == "2"
    finally:
        browser.kill()
    time.sleep(0.5)
    assert browser_pool.live_processes(browser.session_id, str(browser.home)) == []


def test_sandbox_false_runs_chromium_without_it_and_says_so(caplog):
    launch = sandbox.plan(False)
    assert (launch.sandbox, launch.user, launch.arguments) == ("off", None, ("--no-sandbox",))
    assert any(r.levelno == logging.WARNING and "without its sandbox" in r.getMessage() for r in caplog.records)


@needs_root
def test_user_namespaces_are_found_here_and_missed_where_forbidden():
    nobody = sandbox.plan(True).user
    assert sandbox.why_no_user_namespaces(nobody) is None
    check = "from exporter.fetch import sandbox; print(sandbox.why_no_user_namespaces(sandbox.plan(False).user))"
    done = subprocess.run([sys.executable, WITHOUT_USERNS, sys.executable, "-c", check], capture_output=True,
                          text=True, timeout=60, check=True)
    assert "No space left on device" in done.stdout  # what unshare(CLONE_NEWUSER) says past the limit


@needs_root
def test_without_user_namespaces_or_setuid_helper_the_exporter_refuses_in_one_line(tmp_path):
    check = ("from exporter.fetch import sandbox\n"
             "try:\n    sandbox.plan(True, 'chromium')\nexcept sandbox.SandboxError as exc:\n    print(exc)\n")
    env = dict(os.environ, CHROME_DEVEL_SANDBOX=str(tmp_path / "absent"))
    done = subprocess.run([sys.executable, WITHOUT_USERNS, sys.executable, "-c", check], capture_output=True,
                          text=True, timeout=60, check=True, env=env)
    message = done.stdout.strip()
    assert message.startswith("Chromium's sandbox cannot run here: no user namespaces (")
    assert "\n" not in message
    for advice in ("user.max_user_namespaces", "deploy/seccomp/chromium.json", "chromium-sandbox",
                   "fetchers.chromium.sandbox: false"):
        assert advice in message


@needs_root
def test_the_setuid_helper_counts_only_where_setuid_works(tmp_path, monkeypatch):
    helper = tmp_path / "chrome-sandbox"
    helper.write_bytes(b"")
    monkeypatch.setenv("CHROME_DEVEL_SANDBOX", str(helper))  # Chromium's own override; children inherit it
    assert sandbox.why_no_setuid_helper(None) == f"{helper} is not setuid root"
    os.chmod(helper, 0o4755)
    if os.statvfs(helper).f_flag & os.ST_NOSUID:
        assert sandbox.why_no_setuid_helper(None) == f"{helper} is on a nosuid mount"
        return
    assert sandbox.why_no_setuid_helper(None) is None
    check = "from exporter.fetch import sandbox; print(sandbox.why_no_setuid_helper(None))"
    for setpriv, why in ((["--no-new-privs"], "no_new_privs"), (["--bounding-set", "-sys_admin"], "CAP_SYS_ADMIN")):
        done = subprocess.run(["setpriv", *setpriv, sys.executable, "-c", check], capture_output=True, text=True,
                              timeout=60, check=True)
        assert why in done.stdout, done.stdout + done.stderr


def test_as_root_without_an_unprivileged_user_it_refuses(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "UNPRIVILEGED_USER", "no-such-user-here")
    with pytest.raises(sandbox.SandboxError, match=r"^running as root, Chromium must run as an unprivileged user"):
        sandbox.plan(True)


@needs_root
def test_captcha_exporter_run_refuses_to_start_when_no_sandbox_can_run(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("targets: [{name: a, url: 'https://a.example/', fetchers: [http, chromium]}]\n"
                      f"data_dir: {tmp_path / 'data'}\nweb: {{listen: '127.0.0.1:9'}}\n")  # never reached
    env = dict(os.environ, CHROME_DEVEL_SANDBOX=str(tmp_path / "absent"))
    done = subprocess.run([sys.executable, WITHOUT_USERNS, sys.executable, "-m", "exporter", "run", "--config",
                           str(config)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [errors[0]] and errors[0].startswith("error: Chromium's sandbox cannot run here:"), done.stderr
    assert "Traceback" not in done.stderr


def test_captcha_exporter_probe_says_in_one_line_when_no_sandbox_can_run(tmp_path, monkeypatch, capsys):
    from exporter import cli

    def no_sandbox(wanted, binary=None):
        raise sandbox.SandboxError("Chromium's sandbox cannot run here: (what to change)")

    monkeypatch.setattr(sandbox, "plan", no_sandbox)
    config = tmp_path / "config.yaml"
    config.write_text("targets: [{name: a, url: 'https://a.example/', fetchers: [chromium]}]\n")
    assert cli.main(["probe", "--config", str(config), "--target", "a"]) == 1
    assert capsys.readouterr().out == "error: Chromium's sandbox cannot run here: (what to change)\n"
