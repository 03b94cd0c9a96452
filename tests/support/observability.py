"""The board, the alert rules and the Pushgateway, as the tests read them."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import yaml

from tests.support.models import REPO

DEPLOY = REPO / "deploy"


def dashboard() -> dict[str, Any]:
    loaded = json.loads((DEPLOY / "grafana" / "sensor-anomaly.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def gateway_metrics(url: str, job: str) -> dict[str, list[dict[str, object]]]:
    """Metric families the Pushgateway holds for `job`, read from its own HTTP API."""
    with urllib.request.urlopen(f"http://{url}/api/v1/metrics", timeout=5) as response:
        groups = json.loads(response.read())["data"]
    out: dict[str, list[dict[str, object]]] = {}
    for group in groups:
        if group["labels"].get("job") != job:
            continue
        for name, family in group.items():
            if isinstance(family, dict) and "metrics" in family:
                out[name] = family["metrics"]
    return out
