"""Our tor: launch one with stem or connect to one, then add one SocksPort per lane.

Each lane is a SocksPort with its own ``SessionGroup``; tor reports the group
of every stream as ``SESSION_GROUP`` in STREAM events, which is how the
circuit pinner knows a stream's lane (Chromium cannot send SOCKS credentials,
so usernames cannot be the mapping).  The lanes are added with ``SETCONF
SocksPort`` listing the existing ports plus ours, and removed on close.
Our ports carry ``ExtendedErrors`` (proposal 304): a failed connection to an
onion service is answered with a SOCKS5 reply of its own, X'F0'–X'F7'
(descriptor not found, introduction failed, …), not a general failure.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import stem
import stem.connection
import stem.process
from stem.control import Controller

from exporter.config import TorConfig
from exporter.values import Lane

log = logging.getLogger(__name__)

FIRST_SESSION_GROUP = 1000  # well above any SessionGroup a hand-written torrc is likely to use
_SESSION_GROUP = re.compile(r"\bSessionGroup=(\d+)", re.IGNORECASE)
# Server descriptors carry full exit policies (microdescriptor summaries omit private ranges).
# A tor that uses microdescriptors fetches them late (7-57 s on the test bed) if at all;
# with UseMicrodescriptors 0 they arrive within seconds, and circuits are built from them.
_OUR_OPTIONS = {"FetchUselessDescriptors": "1", "UseMicrodescriptors": "0"}
DESCRIPTOR_WAIT = 60.0  # seconds open_tor waits for server descriptors after switching tor to them


class TorUnavailable(Exception):
    """Our tor cannot be started, reached or authenticated to; ``str()`` is one line."""


@dataclass
class OurTor:
    """A controller on our tor, the lanes we added to it, and what to undo on close."""

    controller: Controller
    lanes: list[Lane]
    version: str
    process: subprocess.Popen | None = None
    _restore: dict[str, list[str] | None] = field(default_factory=dict, repr=False)
    _temporary_directory: Path | None = field(default=None, repr=False)

    def bootstrapped(self) -> bool:
        """Tor reports bootstrap PROGRESS=100 (it has a consensus and can build circuits)."""
        try:
            return "PROGRESS=100" in self.controller.get_info("status/bootstrap-phase")
        except stem.ControllerError:
            return False

    def wait_bootstrapped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.bootstrapped():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    def close(self) -> None:
        """Remove our lanes and options (connect mode) or stop the tor we launched."""
        if self.process is None and self.controller.is_alive():
            try:
                self.controller.set_options([(name, values) for name, values in self._restore.items()])
            except stem.ControllerError as exc:
                log.warning("could not restore tor's settings", extra={"settings": ",".join(self._restore), "err": str(exc)})
        self.controller.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._temporary_directory is not None:
            shutil.rmtree(self._temporary_directory, ignore_errors=True)


def open_tor(cfg: TorConfig, lanes: int) -> OurTor:
    """Launch or connect to our tor (``cfg.mode``) and add ``lanes`` SocksPorts to it."""
    if cfg.mode == "launch":
        tor = _launch(cfg)
    elif cfg.mode == "connect":
        controller = _connect(cfg.control_host, cfg.control_port, cfg.password, cfg.cookie_file)
        tor = OurTor(controller, [], _version(controller))
    else:
        raise ValueError(f"unknown tor mode {cfg.mode!r}")
    try:
        if tor.process is None:
            tor._restore.update(_current_options(tor.controller, _OUR_OPTIONS))
            tor.controller.set_options(_OUR_OPTIONS)
            if tor._restore["UseMicrodescriptors"] != ["0"] and not wait_for_descriptors(tor.controller):
                log.warning("tor has not fetched every server descriptor; circuits through the missing relays "
                            "fail until it has", extra={"waited_seconds": DESCRIPTOR_WAIT})
        tor._restore["SocksPort"] = tor.controller.get_conf("SocksPort", None, multiple=True) or None
        tor.lanes = add_lanes(tor.controller, lanes, cfg.socks_host)
    except (stem.ControllerError, OSError) as exc:
        tor.close()
        raise TorUnavailable(f"cannot add SocksPorts for {lanes} lanes to tor: {exc}") from exc
    log.info("tor ready", extra={"tor_version": tor.version, "lanes": len(tor.lanes)})
    return tor


def add_lanes(controller: Controller, count: int, host: str = "127.0.0.1", attempts: int = 3) -> list[Lane]:
    """SETCONF SocksPort = the existing ports + one per lane on a free port, each its own SessionGroup.

    A port found free may be taken before tor binds it; tor then refuses the
    SETCONF and we try again with other ports.
    """
    existing = [value for value in controller.get_conf("SocksPort", [], multiple=True) if value.split()[0] != "0"]
    used_groups = [int(group) for value in existing for group in _SESSION_GROUP.findall(value)]
    first_group = max([FIRST_SESSION_GROUP - 1, *used_groups]) + 1
    for _ in range(attempts):
        lanes = [Lane(index, host, _free_port(host), first_group + index) for index in range(count)]
        ours = [f"{lane.socks_host}:{lane.socks_port} SessionGroup={lane.session_group} ExtendedErrors"
                for lane in lanes]
        try:
            controller.set_options({"SocksPort": existing + ours})
            return lanes
        except stem.InvalidRequest as exc:
            refused = exc
    raise refused


def wait_for_descriptors(controller: Controller, timeout: float = DESCRIPTOR_WAIT) -> bool:
    """Wait until tor has a server descriptor for every relay of its consensus.

    Right after ``UseMicrodescriptors 0`` tor has none, and EXTENDCIRCUIT
    answers 552 "No descriptor for …" until they arrive.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            relays = [entry.fingerprint for entry in controller.get_network_statuses()]
            if relays and all(controller.get_info(f"desc/id/{fingerprint}", None) for fingerprint in relays):
                return True
        except stem.ControllerError:
            pass
        time.sleep(0.25)
    return False


def _launch(cfg: TorConfig) -> OurTor:
    """Start tor with stem: ControlPort on a free loopback port, cookie authentication."""
    temporary = None
    data_directory = cfg.data_directory
    if data_directory is None:
        data_directory = temporary = Path(tempfile.mkdtemp(prefix="captcha-exporter-tor-"))
    control_port = _free_port(cfg.control_host)
    config = {
        "DataDirectory": str(data_directory),
        "ControlPort": f"{cfg.control_host}:{control_port}",
        "CookieAuthentication": "1",
        "SocksPort": "0",
        **_OUR_OPTIONS,
    }
    config.update({name: list(values) for name, values in cfg.torrc.items()})
    try:
        process = stem.process.launch_tor_with_config(config, tor_cmd=cfg.executable, completion_percent=0,
                                                      take_ownership=True)
    except OSError as exc:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
        raise TorUnavailable(f"cannot start tor ({cfg.executable}): {exc}") from exc
    try:
        controller = _connect(cfg.control_host, control_port, None, None)
    except TorUnavailable:
        process.kill()
        process.wait()
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    return OurTor(controller, [], _version(controller), process=process, _temporary_directory=temporary)


def _connect(host: str, port: int, password: str | None, cookie_file: Path | None) -> Controller:
    """Controller.from_port, then AUTHENTICATE with the password, the given cookie, or what PROTOCOLINFO offers."""
    address = f"{host}:{port}"
    try:
        controller = Controller.from_port(address=host, port=port)
    except stem.SocketError as exc:
        raise TorUnavailable(f"cannot reach tor's ControlPort at {address}: {_socket_reason(exc)}") from None
    try:
        if password is not None:
            controller.authenticate(password=password)
        elif cookie_file is not None:
            # authenticate() also attaches event listeners; give it the cookie we were told to use
            protocolinfo = stem.connection.get_protocolinfo(controller)
            protocolinfo.cookie_path = str(cookie_file)
            controller.authenticate(protocolinfo_response=protocolinfo)
        else:
            controller.authenticate()
    except (stem.connection.AuthenticationFailure, stem.SocketError) as exc:
        controller.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TorUnavailable(f"cannot authenticate to tor's ControlPort at {address}: {reason}") from None
    return controller


def _socket_reason(exc: stem.SocketError) -> str:
    cause = exc.args[0] if exc.args else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(exc) or type(exc).__name__


def _version(controller: Controller) -> str:
    version = controller.get_version()
    return f"{version.major}.{version.minor}.{version.micro}.{version.patch or 0}"


def _current_options(controller: Controller, names) -> dict[str, list[str] | None]:
    return {name: controller.get_conf(name, None, multiple=True) or None for name in names}


def _free_port(host: str) -> int:
    """A port the kernel says is free on ``host`` now (tor binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
