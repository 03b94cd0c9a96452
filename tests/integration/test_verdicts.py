"""Engineers' verdicts teach the next model, on a real broker: a fleet whose normal moves to a
new level that the model in service flags; those episodes judged false alarms, a fault's
episode confirmed; the retrained model no longer flags the new level and still catches a
fault; a candidate that misses the confirmed episode is rejected, saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from anomaly.model import ModelStore
from anomaly.scoring import series_flags
from devtools import simulator
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import create_topics
from tests.support.kafka import published_events, settings_on
from tests.support.models import REPO, Trained
from training.job import train
from training.settings import TrainingSettings
from training.verdicts import read_verdicts
from worker.settings import WorkerSettings

SHIFTED = ("pump-01", "pump-02")  # their pressure's normal moves up (a new setpoint)
SHIFT_AT, READINGS = 700, 1500


def shifted(
    records: Iterator[tuple[bytes, bytes]], at: int, size: float
) -> list[tuple[bytes, bytes]]:
    """The records, with SHIFTED's pressure `size` higher from their reading `at` on."""
    seen: dict[bytes, int] = {}
    out = []
    for key, value in records:
        n = seen[key] = seen.get(key, -1) + 1
        if key.decode() in SHIFTED and n >= at:
            record = json.loads(value)
            record["values"]["pressure"] += size
            value = json.dumps(record).encode()
        out.append((key, value))
    return out


def cli(
    settings: WorkerSettings, *args: str, feedback: str | None = None
) -> subprocess.CompletedProcess[str]:
    feedback = feedback or f"{settings.topics.alerts}.verdicts"
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TRAINING_TOPICS__INPUT": settings.topics.input,
           "TRAINING_TOPICS__ALERTS": settings.topics.alerts,
           "TRAINING_TOPICS__FEEDBACK": feedback}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_false_alarms_become_normal_and_a_confirmed_episode_guards_the_gate(
    kafka4: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained.root, store)
    settings = settings_on(kafka4, store)
    feedback = f"{settings.topics.alerts}.verdicts"
    create_topics(settings.kafka, {feedback: 1})
    size = 5 * float(simulator.sensor_std(simulator.clean_rows(5000, seed=1))[
        simulator.FEATURES.index("pressure")])  # fmt: skip
    fleet = Fleet(n_assets=4, seed=31, start=datetime.now(UTC) - timedelta(minutes=40))
    fault = next(f for f in fleet.faults(READINGS, first=1100) if f.asset_id == "pump-00")
    stream = shifted(fleet.records(READINGS, [fault]), SHIFT_AT, size)
    published = published_events(settings, stream, 120)
    opened = [e for e in published if e["type"] == "open"]
    false_alarms = [e for e in opened if e["asset_id"] in SHIFTED]
    assert {e["asset_id"] for e in false_alarms} == set(SHIFTED)  # the service flags the level
    began = fault.start_ts.isoformat().replace("+00:00", "Z")
    confirmed = [e for e in opened if e["asset_id"] == "pump-00" and e["started_at"] >= began]
    assert confirmed, "the fault was not caught"

    for event in false_alarms:
        done = cli(settings, "verdict", event["episode_id"], "false_alarm", "--note", "setpoint")
        assert done.returncode == 0, done.stderr[-2000:]
    for _ in range(2):  # recorded twice: counts once
        done = cli(settings, "verdict", confirmed[0]["episode_id"], "confirmed")
        assert done.returncode == 0, done.stderr[-2000:]
    unknown = cli(settings, "verdict", f"{settings.topics.input}/0/999999", "confirmed")
    assert unknown.returncode == 3
    assert "the episode id is unknown" in unknown.stderr
    bad = cli(settings, "verdict", confirmed[0]["episode_id"], "maybe")
    assert bad.returncode == 3
    assert "'maybe' is not a verdict: say false_alarm or confirmed" in bad.stderr
    nowhere = cli(settings, "verdict", confirmed[0]["episode_id"], "confirmed",
                  feedback="no-such-topic")  # fmt: skip
    assert nowhere.returncode == 5  # the broker creates no topic on first use
    assert "the feedback topic 'no-such-topic' (TRAINING_TOPICS__FEEDBACK) does not exist" in (
        nowhere.stderr
    )

    training = TrainingSettings(
        data={"source": "kafka", "since": "2h"}, kafka=settings.kafka,
        topics={**settings.topics.model_dump(include={"input", "alerts", "group"}),
                "feedback": feedback},
        # the new level is a third degree of freedom beside the simulator's two hidden
        # factors: a bottleneck of 2 (the default for 8 sensors) cannot hold it, and its
        # candidate misses the confirmed fault (the gate then rejects it, as below)
        model={"epochs": 80, "patience": 10, "window": 1, "latent": 3}, store={"path": store},
        log_level="WARNING",
    )  # fmt: skip
    verdicts = read_verdicts(training, datetime.now(UTC))
    assert sorted(v.verdict for v in verdicts.values()) == sorted(
        ["confirmed"] + ["false_alarm"] * len(false_alarms)
    )  # the confirmed episode once, though recorded twice
    service = ModelStore(store).load_current()
    outcome = train(training)
    assert outcome.decision.promoted, outcome.decision.reasons
    figures = outcome.decision.figures
    assert figures["candidate_confirmed_flagged"] == figures["service_confirmed_flagged"] == "1/1"
    assert figures["service_false_alarm_flagged"] == f"{len(false_alarms)}/{len(false_alarms)}"
    retrained = ModelStore(store).load_current()

    # fresh readings at the new level: the service model flags them, the retrained one not
    later = Fleet(n_assets=4, seed=32)
    rows = later.rows(1, 600)
    rows[:, simulator.FEATURES.index("pressure")] += size
    flags = {}
    for name, model in (("service", service), ("retrained", retrained)):
        m = model.manifest
        flags[name] = series_flags(model.detector, m.threshold_for("pump-01"), rows, m.window,
                                   m.rules).mean()  # fmt: skip
    assert flags["service"] > 0.5
    assert flags["retrained"] < 0.05
    # ... and a fault at the new level is still caught
    spike = next(f for f in later.faults(600, first=300) if f.kind == "spike")
    faulty = simulator.inject(rows, spike, seed=3)
    m = retrained.manifest
    caught = series_flags(retrained.detector, m.threshold_for("pump-01"), faulty, m.window, m.rules)
    assert caught[spike.start : spike.end + 10].any()

    # a candidate that cannot see the confirmed fault (a threshold 1,000 times too high)
    blind = train(training.model_copy(update={
        "calibration": training.calibration.model_copy(update={"margin": 1000.0})}))  # fmt: skip
    assert not blind.decision.promoted
    assert any("flags 0 of 1 confirmed episodes, fewer than the service model's 1" in r
               for r in blind.decision.reasons), blind.decision.reasons  # fmt: skip
    assert ModelStore(store).current_version() == retrained.version
    assert np.isfinite(flags["retrained"])
