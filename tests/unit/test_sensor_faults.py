"""Broken sensors apart from process faults, through the worker's pipeline and the training
job: a stuck transmitter raises one instrumentation event and no process episode, while a
process fault on the same asset still opens one; a value the worker filled in is no reading;
an evicted asset's open fault is resolved; the training job records the sensors' profile and
leaves the faulted records of the next run out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.model import Artifact
from devtools import simulator
from devtools.simulator import Fault, Fleet
from tests.support.fakes import as_records
from tests.support.models import Trained, settings_for, write_csv
from tests.unit.test_pipeline import TOPICS
from training.job import train
from worker.metrics import Metrics
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

Events = list[dict[str, object]]


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def run(model: Artifact, records: list[tuple[bytes, bytes]], **alerts: int) -> Events:
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings(**alerts))
    p.set_model(model)
    out: Events = []
    raw = as_records(records)
    for i in range(0, len(raw), 100):
        out += [json.loads(m.value) for m in p.process(raw[i : i + 100]).messages]
    return out


def stuck_pump(seed: int) -> tuple[Fleet, Fault]:
    fleet = Fleet(n_assets=3, seed=seed)
    fault = fleet.faults(300)[2]
    assert (fault.asset_id, fault.kind, fault.sensor) == ("pump-02", "stuck", "current")
    return fleet, fault


@pytest.mark.parametrize("seed", [5, 7, 21])
def test_a_stuck_transmitter_is_one_instrumentation_event_and_no_process_episode(
    model: Artifact, seed: int
) -> None:
    fleet, fault = stuck_pump(seed)
    events = run(model, list(fleet.records(300, [fault])))
    mine = [e for e in events if e["asset_id"] == "pump-02"]
    assert [e["type"] for e in mine] == ["sensor_fault", "sensor_fault_resolve"]
    opened = mine[0]
    assert (opened["kind"], opened["fault"], opened["feature"]) == ("instrumentation", "stuck",
                                                                  "current")  # fmt: skip
    at = simulator.timestamp(fault.start + model.manifest.instruments.rules.min_run - 1)  # type: ignore[union-attr]
    assert opened["ts"] == at.isoformat().replace("+00:00", "Z")
    reading = [json.loads(v)["values"]["current"] for k, v in fleet.records(300, [fault])
               if k == b"pump-02"][fault.start]  # fmt: skip
    assert opened["value"] == pytest.approx(reading, rel=1e-5)  # what it is stuck at


def test_a_process_fault_while_a_sensor_is_stuck_still_opens_its_episode(model: Artifact) -> None:
    fleet, stuck = stuck_pump(5)
    drift = Fault("pump-02", "drift", "temperature", stuck.start + 10, stuck.end,
                  stuck.start_ts, stuck.end_ts)  # fmt: skip
    rows = simulator.inject(fleet.rows(2, 300), stuck, seed=1)
    rows = simulator.inject(rows, drift, seed=1)
    records = [
        (b"pump-02", json.dumps({"asset_id": "pump-02", "ts": simulator.timestamp(t).isoformat(),
                                 "values": dict(zip(fleet.features, row.tolist(), strict=True))})
         .encode())
        for t, row in enumerate(rows)
    ]  # fmt: skip
    events = run(model, records)
    kinds = [e["type"] for e in events]
    assert "sensor_fault" in kinds
    opened = [e for e in events if e["type"] == "open"]
    assert opened, kinds
    top = opened[0]["top_features"]
    assert isinstance(top, list)
    assert top[0]["feature"] == "temperature"


def test_a_value_the_worker_filled_in_is_no_reading_of_the_sensor(model: Artifact) -> None:
    fleet = Fleet(n_assets=1, seed=5)
    records = []
    for t, (key, value) in enumerate(fleet.records(300)):
        record = json.loads(value)
        if 100 <= t < 115:  # flow drops out; filled from its last value for up to 30 s
            record["values"]["flow"] = None
        records.append((key, json.dumps(record).encode()))
    events = run(model, records)
    assert not [e for e in events if e["type"] == "sensor_fault"], events


def test_an_evicted_assets_open_fault_is_resolved_with_it(model: Artifact) -> None:
    fleet, fault = stuck_pump(5)
    records = list(fleet.records(300, [fault]))
    into = [i for i, (k, _) in enumerate(records) if k == b"pump-02"][fault.start + 20]
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings(max_assets=3))
    p.set_model(model)
    first = p.process(as_records(records[: into + 1]))
    assert any(json.loads(m.value)["type"] == "sensor_fault" for m in first.messages)
    assert len(p.faults) == 1
    later = records[into + 1 : into + 3]  # pump-00 and pump-01 once more: pump-02 is the oldest
    assert [k for k, _ in later] == [b"pump-00", b"pump-01"]
    newcomer = json.dumps({"asset_id": "pump-99", "ts": simulator.timestamp(1).isoformat(),
                           "values": dict.fromkeys(fleet.features, 1.0)}).encode()  # fmt: skip
    out = p.process(as_records([*later, (b"pump-99", newcomer)]))
    resolved = [json.loads(m.value) for m in out.messages
                if json.loads(m.value)["type"] == "sensor_fault_resolve"]  # fmt: skip
    assert [(e["asset_id"], e["feature"], e["reason"], e["value"]) for e in resolved] == [
        ("pump-02", "current", "evicted", None)
    ]
    assert len(p.faults) == 0
    assert out.stats.faults == [(False, "pump-02", "current", "stuck", "default")]


def test_a_sensor_out_of_order_shows_one_series_while_it_lasts() -> None:
    m = Metrics(CollectorRegistry())

    def series() -> list[dict[str, str]]:
        return [s.labels for f in m.registry.collect() for s in f.samples
                if s.name == "anomaly_sensor_fault_open"]  # fmt: skip

    m.sensor_fault(True, "pump-02", "current", "stuck", "pump")
    m.sensor_fault(True, "pump-01", "flow", "silent", "pump")
    assert {(s["asset_id"], s["fault"]) for s in series()} == {("pump-02", "stuck"),
                                                              ("pump-01", "silent")}  # fmt: skip
    m.sensor_fault(False, "pump-02", "current", "stuck", "pump")
    assert [s["asset_id"] for s in series()] == ["pump-01"]


def test_training_records_the_sensors_and_leaves_the_next_runs_faulted_records_out(
    tmp_path: Path,
) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(3000, seed=4))
    settings = settings_for(data, tmp_path / "store", epochs=5)
    first = train(settings)
    profile = first.manifest.instruments
    assert profile is not None
    assert profile.features == simulator.FEATURES
    rows = simulator.clean_rows(3000, seed=5)
    current = simulator.FEATURES.index("current")
    rows[1000:1200, current] = rows[1000, current]  # a transmitter stuck for 200 records
    write_csv(data, rows)
    second = train(settings.model_copy(update={"clean": settings.clean.model_copy(
        update={"enabled": True})}))  # fmt: skip
    report = json.loads((Path(second.location) / "report.json").read_text())
    marked = report["removed"]["by_rule"]["sensor_faults"]
    stuck_at = profile.limits.stuck_after[current]
    assert marked == pytest.approx(200 - stuck_at + 2, abs=1)
    assert np.isfinite(stuck_at)


def test_the_offline_replay_judges_a_stuck_sensor_as_the_worker_does(model: Artifact) -> None:
    """The training job's cleaning and gate and the benchmarks' replay (anomaly.scoring) judge
    a record with a sensor out of order without it, as the worker does: no episode, where
    counting the stuck sensor flags the fault."""
    from anomaly.scoring import score_series

    fleet, fault = stuck_pump(5)
    events = run(model, list(fleet.records(400, [fault])))
    assert not [e for e in events if e["asset_id"] == "pump-02" and e["type"] == "open"]
    rows = simulator.inject(fleet.rows(2, 400), fault, seed=fleet.seed + 2)
    m = model.manifest
    judged = score_series(model.detector, m.threshold, rows, m.window, m.rules, m.instruments)
    counted = score_series(model.detector, m.threshold, rows, m.window, m.rules)
    assert not judged.flags(m.rules, len(rows)).any()
    assert counted.flags(m.rules, len(rows))[fault.start : fault.end].any()
    inside = slice(fault.start + m.instruments.rules.min_run, fault.end)  # type: ignore[union-attr]
    assert judged.score[inside].mean() < 0.5 * counted.score[inside].mean()
