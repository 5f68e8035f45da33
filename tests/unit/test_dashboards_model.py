"""The dashboards through Grafana's own dashboard model (grafana-foundation-sdk, schema 42).

The SDK decodes a dashboard into typed classes and drops whatever its model
does not know; re-encoding and comparing shows any key or value Grafana's
model would not carry. Only a null `id` may go (it is optional, and null).
Both the shipped dashboards and those of a team's mixin config are checked.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from support import rendered_mixin

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = [*sorted((ROOT / "grafana" / "dashboards").glob("*.json")),
              *sorted((rendered_mixin.custom_root() / "grafana" / "dashboards").glob("*.json"))]


@pytest.fixture(scope="module")
def round_trip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the classic Dashboard model is deprecated
        from grafana_foundation_sdk.cog import plugins
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models.dashboard import Dashboard

        plugins.register_default_plugins()  # typed panel options and Prometheus queries

    def through_model(document: dict) -> dict:
        return json.loads(JSONEncoder().encode(Dashboard.from_json(document)))

    return through_model


def differences(original, encoded, path=""):
    """Keys and values of ``original`` that ``encoded`` lost or changed."""
    if isinstance(original, dict):
        for key, value in original.items():
            if key not in encoded:
                yield f"{path}.{key}: dropped"
            else:
                yield from differences(value, encoded[key], f"{path}.{key}")
    elif isinstance(original, list):
        if not isinstance(encoded, list) or len(encoded) != len(original):
            yield f"{path}: list changed"
        else:
            for index, (a, b) in enumerate(zip(original, encoded)):
                yield from differences(a, b, f"{path}[{index}]")
    elif original != encoded:
        yield f"{path}: {original!r} became {encoded!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: f"{'shipped' if p.is_relative_to(ROOT) else 'custom'}:{p.name}")
def test_grafana_model_keeps_every_key_and_value(path, round_trip):
    document = json.loads(path.read_text())
    assert document.get("id") is None
    assert list(differences(document, round_trip(document))) == [".id: dropped"]


def test_the_check_notices_a_key_grafana_does_not_know(round_trip):
    document = json.loads(DASHBOARDS[0].read_text())
    document["panels"][0]["colour"] = "red"
    assert ".panels[0].colour: dropped" in list(differences(document, round_trip(document)))
