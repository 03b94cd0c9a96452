"""`anomaly-train report EPISODE_ID`, on Apache Kafka 4: the episode's records read back from
the topics the worker used, scored with the model version its event names, written as a PNG
and a JSON that agree with the event they explain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from tests.support.kafka import published_events, settings_on
from tests.support.models import REPO, Trained
from worker.settings import WorkerSettings


def report(
    settings: WorkerSettings, store: Path, out: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TRAINING_TOPICS__INPUT": settings.topics.input,
           "TRAINING_TOPICS__ALERTS": settings.topics.alerts}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "training", "report", *args, "--out", str(out), "--store",
         str(store)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def episode(
    kafka4: LocalBroker, trained: Trained, tmp_path: Path
) -> tuple[WorkerSettings, Path, dict[str, object], dict[str, object]]:
    """A worker that saw a fault through: its settings, its store, the open and resolve
    events of one episode."""
    store = tmp_path / "store"
    shutil.copytree(trained.root, store)
    settings = settings_on(kafka4, store)
    fleet = Fleet(n_assets=2, seed=21)
    published = published_events(settings, fleet.records(300, fleet.faults(300, first=100)))
    opened = next(e for e in published if e["type"] == "open")
    ends = {e["episode_id"]: e for e in published if e["type"] == "resolve"}
    resolved = ends[opened["episode_id"]]
    return settings, store, opened, resolved


def test_the_report_agrees_with_the_event_it_explains(
    episode: tuple[WorkerSettings, Path, dict[str, object], dict[str, object]], tmp_path: Path
) -> None:
    settings, store, opened, resolved = episode
    out = tmp_path / "report"
    done = report(settings, store, out, str(opened["episode_id"]))
    assert done.returncode == 0, done.stderr[-2000:]
    name = "episode-" + str(opened["episode_id"]).replace("/", "-")
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    got = json.loads((out / f"{name}.json").read_text())
    assert got["asset_id"] == opened["asset_id"]
    assert got["model_version"] == opened["model_version"]
    assert got["threshold"] == opened["threshold"]
    assert (got["started_at"], got["ended_at"]) == (opened["started_at"], resolved["ended_at"])
    top = opened["top_features"]
    assert isinstance(top, list)
    assert got["top_features"] == [t["feature"] for t in top]
    records = got["records"]
    source = opened["source"]
    assert isinstance(source, dict)
    at = records["offset"].index(source["offset"])  # the record that opened it
    assert records["score"][at] == pytest.approx(opened["score"], rel=1e-6)
    for item in top:
        feature = item["feature"]
        assert records["actual"][feature][at] == pytest.approx(item["actual"][-1], rel=1e-5)
        assert records["expected"][feature][at] == pytest.approx(item["expected"][-1], rel=1e-5)
    # the asset's records around the episode: before it opened and after it ended
    assert min(records["ts"]) < got["started_at"]
    assert max(records["ts"]) > got["ended_at"]
    assert records["score"][at] > got["threshold"]


def test_an_unknown_episode_is_refused_with_a_clear_message(
    episode: tuple[WorkerSettings, Path, dict[str, object], dict[str, object]], tmp_path: Path
) -> None:
    settings, store, _, _ = episode
    unknown = report(settings, store, tmp_path, f"{settings.topics.input}/0/999999")
    assert unknown.returncode == 3
    assert "the episode id is unknown" in unknown.stderr
    malformed = report(settings, store, tmp_path, "pump-00")
    assert malformed.returncode == 3
    assert "is not an episode id: <input topic>/<partition>/<offset>" in malformed.stderr
