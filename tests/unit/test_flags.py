"""The command line takes the flag names of Prometheus's exporter-toolkit, and today's spellings too."""

from __future__ import annotations

import argparse
import logging

import pytest

from exporter import app
from exporter.config import load_config
from exporter.logs import setup_logging
from exporter.web import listen_address


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    return parser.parse_args(argv)


def test_exporter_toolkit_spellings():
    args = run_args("--config.file=config.yaml", "--web.listen-address", ":9981", "--log.level", "warn")
    assert (args.config, args.web_listen_address, args.log_level) == ("config.yaml", ("0.0.0.0", 9981), "warn")


def test_todays_spellings_keep_working():
    args = run_args("--config", "config.yaml", "--log.level", "warning")
    assert (args.config, args.web_listen_address, args.log_level) == ("config.yaml", None, "warning")


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:9981", ("127.0.0.1", 9981)), (":10981", ("0.0.0.0", 10981)), ("[::1]:9981", ("::1", 9981)),
    ("localhost:1", ("localhost", 1)),
])
def test_listen_addresses(text, address):
    assert listen_address(text) == address


@pytest.mark.parametrize("text", ["9981", "host:", "host:0", "host:65536", "[::1]", "a b:1"])
def test_bad_listen_addresses_are_named(text, capsys):
    with pytest.raises(SystemExit):
        run_args("--config", "c.yaml", "--web.listen-address", text)
    assert f"argument --web.listen-address: expected [HOST]:PORT with a port from 1 to 65535, got {text!r}" \
        in capsys.readouterr().err


def test_warn_is_a_log_level():
    setup_logging("warn", "logfmt")
    assert logging.getLogger().level == logging.WARNING


def test_the_listen_flag_beats_the_config_also_after_a_reload(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"targets: [{{name: news, url: 'http://news.test/'}}]\ndata_dir: {tmp_path / 'data'}\n"
                    "web: {listen: '127.0.0.1:9981'}\ntor: {mode: connect, control: '127.0.0.1:1'}\n")
    exporter = app.Exporter(load_config(path), listen=("127.0.0.1", 0))
    exporter.start()  # no tor there: it keeps retrying, which is fine here
    try:
        assert exporter.web.address[0] == "127.0.0.1" and exporter.web.address[1] != 9981
        assert exporter.reload()[0]
        assert (exporter.config.web.listen_host, exporter.config.web.listen_port) == ("127.0.0.1", 0)
    finally:
        exporter.stop()
