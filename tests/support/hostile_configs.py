"""Config files that once made `check-config` or a reload show a traceback (issue #19, item 7).

Each case writes its file into a directory and says which one-line error it must now give:
``FILE:LINE: key.path: message``.  The unit tests feed them to check-config, to
``POST /-/reload`` and to SIGHUP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# run a command as nobody when the tests run as root: root may read any directory
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
TARGET = "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"
NESTED = "[" * 250 + "]" * 250
NESTED_GROUPS = "(" * 1000 + "a" + ")" * 1000
LONG_PATH = "/" + "a" * 5000


@dataclass(frozen=True)
class Hostile:
    id: str
    text: Callable[[Path], str]  # the file's text, given its directory (a case may put files there)
    line: int
    path: str
    message: str  # a part of the message

    def write(self, directory: Path, name: str = "config.yaml") -> Path:
        path = directory / name
        path.write_text(self.text(directory), encoding="utf-8")
        return path


def _unsearchable_directory(directory: Path) -> str:
    """A CA file inside a directory nobody but root may search (stat fails with EACCES)."""
    locked = directory / "locked"
    locked.mkdir(exist_ok=True)
    (locked / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    os.chmod(locked, 0)
    return TARGET + f"fetchers: {{http: {{ca_file: {locked / 'ca.pem'}}}}}\n"


def _signature(rule: str) -> str:
    return TARGET + f"detect:\n  signatures:\n    - {{name: acme, kind: block, all: [{rule}]}}\n"


CASES = [
    Hostile("250-nested-lists-in-targets", lambda d: "targets: " + NESTED + "\n",
            1, "targets[0]", "nested too deeply (more than 64 levels"),
    Hostile("250-nested-lists-at-the-top", lambda d: NESTED + "\n", 1, "[0][0]", "nested too deeply"),
    Hostile("250-nested-lists-in-an-ignore-list",
            lambda d: "targets:\n  - {name: s, url: 'http://a/', change: {ignore: " + NESTED + "}}\n",
            2, "targets[0]", "nested too deeply"),
    Hostile("250-nested-lists-in-torrc", lambda d: TARGET + "tor: {torrc: {Log: " + NESTED + "}}\n",
            3, "tor.torrc", "nested too deeply"),
    Hostile("250-nested-lists-in-headers", lambda d: TARGET + "fetchers: {http: {headers: " + NESTED + "}}\n",
            3, "fetchers.http", "nested too deeply"),
    Hostile("5000-character-ca-file", lambda d: TARGET + f"fetchers: {{http: {{ca_file: {LONG_PATH}}}}}\n",
            3, "fetchers.http.ca_file", "cannot look at /aaaa"),
    Hostile("5000-character-password-file",
            lambda d: TARGET + f"tor: {{mode: connect, password_file: {LONG_PATH}}}\n",
            3, "tor.password_file", "File name too long"),
    Hostile("home-of-no-user-in-data-dir", lambda d: TARGET + "data_dir: ~nosuchuser/x\n",
            3, "data_dir", "cannot expand '~nosuchuser/x': no user 'nosuchuser'"),
    Hostile("home-of-no-user-in-a-command", lambda d: TARGET + "tor: {executable: ~nosuchuser/bin/tor}\n",
            3, "tor.executable", "no user 'nosuchuser'"),
    Hostile("unsearchable-directory", _unsearchable_directory,
            3, "fetchers.http.ca_file", "Permission denied"),
    Hostile("huge-repeat-in-ignore",
            lambda d: "targets:\n  - {name: s, url: 'http://a/', change: {ignore: ['a{99999999999999999999}']}}\n",
            2, "targets[0].change.ignore[0]", "the repetition number is too large"),
    Hostile("1000-nested-groups-in-ignore",
            lambda d: "targets:\n  - {name: s, url: 'http://a/', change: {ignore: ['" + NESTED_GROUPS + "']}}\n",
            2, "targets[0].change.ignore[0]", "nested too deeply"),
    Hostile("huge-repeat-in-a-signature", lambda d: _signature("{title: 'a{99999999999999999999}'}"),
            5, "detect.signatures[0].all[0].title", "the repetition number is too large"),
    Hostile("1000-nested-groups-in-a-signature", lambda d: _signature("{body: '" + NESTED_GROUPS + "'}"),
            5, "detect.signatures[0].all[0].body", "invalid regular expression: nested too deeply"),
    Hostile("newline-in-a-key", lambda d: TARGET + 'tor: {"con\\ntrol": x}\n',
            3, "tor['con\\ntrol']", "unknown key 'con\\ntrol'"),
    Hostile("lone-surrogate-in-a-key", lambda d: TARGET + 'tor: {"\\udc80": x}\n',
            3, "tor['\\udc80']", "unknown key '\\udc80'"),
]


@contextmanager
def shared_directory(prefix: str) -> Iterator[Path]:
    """A directory an UNPRIVILEGED process may read (pytest's tmp_path is root's alone); removed after,
    locked directories the cases made included."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in directory.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(directory)
