"""`captcha-exporter classify FILE...`: the verdict for saved responses.

Exit 0 whatever the verdicts (a challenged page is an answer, not a failure);
exit 2 when a file or the config cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exporter.config import ConfigError, load_config
from exporter.detect.detector import Detector
from exporter.detect.saved import SavedResponseError, load_saved
from exporter.detect.signatures import load_signatures

EXIT_UNREADABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="HAR 1.2 archives or HTML files")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per file: {"file", "verdict", "provider", "markers"}')
    parser.add_argument("--status", type=int, default=200,
                        help="HTTP status of plain HTML files (default 200)")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a response header of plain HTML files (repeatable)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="exporter config whose detect.signatures are added (validated like `check-config`)")


def run(args: argparse.Namespace) -> int:
    try:
        headers = tuple(_parse_header(h) for h in args.header)
        custom = load_config(args.config).detect_signatures if args.config else None
        detector = Detector(load_signatures(custom))
    except (ValueError, ConfigError) as exc:
        print(f"captcha-exporter classify: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    status = 0
    for path in args.files:
        try:
            response = load_saved(path, status=args.status, headers=headers)
        except SavedResponseError as exc:
            print(f"captcha-exporter classify: {exc}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        verdict = detector.classify(response)
        if args.json:
            print(json.dumps({"file": str(path), "verdict": verdict.kind,
                              "provider": verdict.provider or None, "markers": list(verdict.markers)}))
        else:
            name = f"{verdict.kind}/{verdict.provider}" if verdict.provider else verdict.kind
            print(f"{path}: {name}" + (f"  [{', '.join(verdict.markers)}]" if verdict.markers else ""))
    return status


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()
