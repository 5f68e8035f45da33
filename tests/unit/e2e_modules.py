"""Helper modules of tests/e2e (promql_catalog, rendered_mixin) for unit tests, which run without
tests/e2e on their import path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

E2E = Path(__file__).resolve().parents[1] / "e2e"


def e2e_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, E2E / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
