"""Maintenance windows and shelves end to end on a real broker (Apache Kafka 4, the calendar
topic compacted), set with the commands an engineer types: a pump serviced inside a window
(Paris time) alarms nobody and is not learnt; a shelved pump's episode opens held back and its
shelf shows on the board; the other pumps page as before (a stuck sensor, as instrumentation);
the entries are listed and removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import create_topics
from tests.support.kafka import Running, processed, produce, read, settings_on
from tests.support.models import REPO, Trained
from tests.support.waiting import wait_until
from training.job import train
from training.settings import TrainingSettings
from worker.metrics import EVENT_TYPES
from worker.settings import WorkerSettings

READINGS = 400


def cli(settings: WorkerSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TRAINING_TOPICS__CALENDAR": settings.topics.calendar}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_a_window_and_a_shelf_hold_pages_back_and_the_window_is_not_learnt(
    kafka4: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    shutil.copytree(trained.root, tmp_path / "store")
    settings = settings_on(kafka4, tmp_path / "store")
    calendar = settings.topics.calendar
    create_topics(settings.kafka, {calendar: 1}, compacted=[calendar])
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    paris = start.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    fleet = Fleet(n_assets=4, seed=5, start=start)
    faults = {f.asset_id: f for f in fleet.faults(READINGS)}
    kinds = [faults[f"pump-0{i}"].kind for i in range(4)]
    assert kinds == ["spike", "drift", "stuck", "broken_correlation"]

    cli(settings, "window", "set", "valves", "--assets", "pump-01", "--timezone", "Europe/Paris",
        "--start", (paris - timedelta(minutes=1)).isoformat(),
        "--end", (paris + timedelta(seconds=300)).isoformat(), "--note", "valve change",
        "--by", "ana")  # fmt: skip
    shelved = cli(settings, "shelve", "pump-03", "--for", "2h", "--by", "ana", "--reason",
                  "transmitter on order")  # fmt: skip
    assert "shelf   pump-03" in shelved.stdout
    listed = cli(settings, "window", "list").stdout
    assert "window  valves  pump-01" in listed
    assert "suppress alerts, exclude from training (valve change)" in listed
    assert "1 windows, 1 shelves" in listed

    running = Running(settings)
    try:
        sent = produce(settings, fleet.records(READINGS, list(faults.values())))
        wait_until(lambda: processed(running.metrics) >= sent, 90, "the stream scored")
        sample = running.metrics.registry.get_sample_value
        assert sample("anomaly_calendar_entries", {"kind": "window"}) == 1
        shelf = {"asset_id": "pump-03", "shelved_by": "ana", "reason": "transmitter on order"}
        until = sample("anomaly_asset_shelved_until_seconds", shelf)
        assert until is not None
        assert abs(until - (start.timestamp() + 7200)) < 60
        n = sum(sample("anomaly_alert_events_total", {"type": t}) or 0 for t in EVENT_TYPES)
    finally:
        running.stop()
    events = [json.loads(r.value or b"") for r in read(settings, settings.topics.alerts, int(n))]
    opened = {e["asset_id"]: e for e in events if e["type"] == "open"}
    # every fault of the process opens its episode; pump-02's stuck sensor is instrumentation
    assert set(opened) == {"pump-00", "pump-01", "pump-03"}
    assert [e["type"] for e in events if e["asset_id"] == "pump-02"][:1] == ["sensor_fault"]
    assert opened["pump-01"]["suppressed"] == "maintenance:valves"
    assert opened["pump-03"]["suppressed"] == "shelved"
    assert opened["pump-00"]["suppressed"] is None
    pump01 = [e for e in events if e["asset_id"] == "pump-01"]
    assert all(e["suppressed"] == "maintenance:valves" for e in pump01)
    assert not [e for e in events if e["type"] == "unsuppress"], "nothing outlived its hold"

    outcome = train(TrainingSettings(
        data={"source": "kafka", "since": "2h", "end": (start + timedelta(hours=1)).isoformat()},
        kafka=settings.kafka.model_dump(), topics=settings.topics.model_dump(exclude={"wait_s"}),
        model={"epochs": 5, "window": 1}, store={"path": str(tmp_path / "store")},
    ))  # fmt: skip
    report = json.loads((Path(outcome.location) / "report.json").read_text())
    assert report["removed"]["maintenance"] == 300  # pump-01's readings 0-299
    assert report["read"]["records"] == sent

    cli(settings, "window", "remove", "valves")
    cli(settings, "unshelve", "pump-03")
    assert "0 windows, 0 shelves" in cli(settings, "window", "list").stdout
