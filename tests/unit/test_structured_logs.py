"""Every log line of the exporter is a fixed message plus fields: nothing variable is formatted into the message.

A fingerprint, a target or an error inside the message string would make lines
impossible to filter by field, and a secret inside it would escape the
redaction by field name (``exporter.redact``, which ``exporter.logs`` applies).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def formatted_log_calls(source: str) -> list[int]:
    """Line numbers of ``log.<level>(…)`` calls whose message is built from variables."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("log", "logger", "logging")):
            continue
        message_at = 1 if node.func.attr == "log" else 0
        args = node.args[message_at:]
        if len(args) != 1 or not (isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_log_messages_are_constant_and_variables_are_fields(path):
    assert formatted_log_calls(path.read_text()) == [], f"{path}: use log.x('message', extra={{...}})"


def test_the_check_finds_formatted_messages():
    source = ('log.info("circuit via %s", fp)\nlog.info(f"to {exit}")\nlog.debug("a" + b)\n'
              'log.info("ok", extra={"exit": fp})\nlog.log(10, "x %s", y)\n')
    assert formatted_log_calls(source) == [1, 2, 3, 5]
