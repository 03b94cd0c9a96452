"""The board, the alert rules and the Pushgateway, as the tests read them; a real
Prometheus (and Alertmanager) started for a test."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from devtools import local_broker
from tests.support.http import get
from tests.support.models import REPO
from tests.support.waiting import wait_until

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
# The rules whose alerts are the product's output (an asset in alarm), not a fault of it.
ASSET_GROUP = "sensor-anomaly-assets"


@contextlib.contextmanager
def running_prometheus(directory: Path, config: str) -> Iterator[str]:
    """Prometheus (Debian package) with `config` (YAML), on a free loopback port, its data
    under `directory`; yields host:port once it is ready."""
    port = local_broker.free_port()
    (directory / "prometheus.yml").write_text(config)
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        local_broker.wait_for_port(port, process, "prometheus", 30)
        # The port opens before the storage is: until then every API answers 503.
        ready = f"http://127.0.0.1:{port}/-/ready"
        wait_until(lambda: get(ready)[0] == 200, 60, "prometheus ready")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result (a list of series)."""
    url = f"http://{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def dashboard() -> dict[str, Any]:
    loaded = json.loads((DEPLOY / "grafana" / "sensor-anomaly.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def rule_exprs(*, assets: bool = True) -> dict[str, str]:
    """Every alert rule's expression; without `assets`, only the rules about the product's
    own health (not AnomalyAssetInAlarm and its group)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]
            if assets or g["name"] != ASSET_GROUP}  # fmt: skip


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
