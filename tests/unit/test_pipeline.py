"""The pure core: a batch of raw records in, alert events, dead letters and offsets out."""

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from anomaly.model import Artifact, ModelStore
from anomaly.settings import TopicSettings
from devtools.simulator import Fleet
from tests.support.fakes import FakeRecord, as_records
from tests.support.models import Trained
from tests.support.records import MALFORMED, good
from worker.pipeline import BatchProcessor, BatchResult
from worker.settings import AlertSettings, BatchSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")


def processor(artifact: Artifact, **alerts: int) -> BatchProcessor:
    p = BatchProcessor(TOPICS, BatchSettings(max_record_bytes=2048), AlertSettings(**alerts))
    p.set_model(artifact)
    return p


def events(result: BatchResult) -> list[dict[str, object]]:
    return [json.loads(m.value) for m in result.messages if m.topic == "alerts"]


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def test_every_malformed_record_is_dead_lettered_and_good_ones_around_it_scored(
    model: Artifact,
) -> None:
    raw: list[tuple[bytes | None, bytes | None]] = []
    for i, value in enumerate(MALFORMED.values()):
        raw += [(b"pump-1", good("pump-1", i)), (b"pump-1", value)]
    records = as_records(raw, partitions=1)
    result = processor(model).process(records)
    assert result.stats.scored == len(MALFORMED)
    assert dict(result.stats.dead_letters) == dict.fromkeys(MALFORMED, 1)
    letters = [json.loads(m.value) for m in result.messages if m.topic == "dlq"]
    assert [letter["reason"] for letter in letters] == list(MALFORMED)
    for letter, record in zip(letters, records[1::2], strict=True):
        assert letter["source"] == {"topic": "in", "partition": 0, "offset": record.offset}
        original = record.value
        assert letter["value"] == (base64.b64encode(original).decode() if original else None)
        assert letter["key"] == base64.b64encode(b"pump-1").decode()
        assert letter["error"]
    assert result.offsets == {("in", 0): len(records)}


def test_faults_open_and_resolve_episodes_naming_asset_and_sensor(model: Artifact) -> None:
    fleet = Fleet(n_assets=4, seed=5)
    faults = fleet.faults(300)
    records = as_records(fleet.records(300, faults))
    p = processor(model)
    results = [p.process(records[i : i + 100]) for i in range(0, len(records), 100)]
    opened = [e for r in results for e in events(r) if e["type"] == "open"]
    resolved = [e for r in results for e in events(r) if e["type"] == "resolve"]
    broken = [e for r in results for e in events(r) if e["type"] == "sensor_fault"]
    for fault in faults:
        if fault.kind == "stuck":  # a broken transmitter: instrumentation, no process episode
            said = [(e["asset_id"], e["feature"], e["fault"]) for e in broken]
            assert said == [(fault.asset_id, fault.sensor, "stuck")]
            assert not [e for e in opened if e["asset_id"] == fault.asset_id]
            continue
        mine = [e for e in opened if e["asset_id"] == fault.asset_id]
        assert mine, f"{fault} opened no episode"
        top = mine[0]["top_features"]
        assert isinstance(top, list)
        expected = {"flow", "pressure"} if fault.kind == "broken_correlation" else {fault.sensor}
        assert top[0]["feature"] in expected
        assert any(e["asset_id"] == fault.asset_id for e in resolved)
    first = opened[0]
    assert first["model_version"] == model.version
    assert first["threshold"] == model.threshold.value
    assert set(first) >= {"episode_id", "ts", "source", "score", "detected_at"}
    assert {"started_at", "ended_at", "records", "peak_score"} <= set(resolved[0])
    assert p.open_episodes == len(opened) - len(resolved)


def test_a_batch_publishes_the_events_one_record_at_a_time_would(model: Artifact) -> None:
    """However many records a batch holds, each event says what its record decided: an
    episode that goes quiet and resumes within one batch is told as it was at each. (Within a
    batch the sensor events come before the episode events: each family keeps its order.)"""
    fleet = Fleet(n_assets=4, seed=3)  # a fleet whose faults go quiet and resume
    records = as_records(fleet.records(300, fleet.faults(300, first=50)))
    whole, single = processor(model, resolve_after_s=120), processor(model, resolve_after_s=120)
    at_once = events(whole.process(records))
    one_by_one = [e for r in records for e in events(single.process([r]))]
    assert {"quiet", "resume"} <= {e["type"] for e in at_once}
    # a forward pass over 1,200 windows and one over a single window differ in float32's
    # last digits: the figures are compared as numbers, the rest exactly
    figures = ("score", "peak_score", "top_features", "detected_at")
    sensors = [e for e in at_once if "episode_id" not in e]
    assert sensors == [e | {"detected_at": s["detected_at"]}
                       for e, s in zip([e for e in one_by_one if "episode_id" not in e],
                                       sensors, strict=True)]  # fmt: skip
    at_once = [e for e in at_once if "episode_id" in e]
    one_by_one = [e for e in one_by_one if "episode_id" in e]
    for a, b in zip(at_once, one_by_one, strict=True):
        assert {k: v for k, v in a.items() if k not in figures} == {
            k: v for k, v in b.items() if k not in figures
        }
        assert a["score"] == pytest.approx(b["score"], rel=1e-5)
        if "peak_score" in a:
            assert a["peak_score"] == pytest.approx(b["peak_score"], rel=1e-5)


def test_events_carry_the_deciding_windows_actual_and_expected_values(model: Artifact) -> None:
    """Each top feature of an open or resolve event shows the window that decided (the
    session's model: one record) against the model's reconstruction of it."""
    fleet = Fleet(n_assets=4, seed=5)
    records = as_records(fleet.records(300, fleet.faults(300)))
    p = processor(model)
    results = [p.process(records[i : i + 100]) for i in range(0, len(records), 100)]
    decided = [e for r in results for e in events(r) if e["type"] in ("open", "resolve")]
    assert {e["type"] for e in decided} == {"open", "resolve"}
    by_source = {(r.partition, r.offset): json.loads(r.value or b"") for r in records}
    features = list(model.manifest.features)
    for event in decided:
        source = event["source"]
        assert isinstance(source, dict)
        values = by_source[(source["partition"], source["offset"])]["values"]
        row = np.array([[[values[f] for f in features]]], dtype=np.float64)
        expected = model.detector.reconstruct(row)[0, 0]
        top = event["top_features"]
        assert isinstance(top, list)
        assert len(top) == 3
        for item in top:
            f = features.index(item["feature"])
            assert item["actual"] == [pytest.approx(values[item["feature"]], rel=1e-5)]
            assert item["expected"] == [pytest.approx(expected[f], rel=1e-5, abs=1e-9)]
    # the shares are the evidence's errors (in each feature's scale), squared, normalised
    opened = next(e for e in decided if e["type"] == "open")
    top = opened["top_features"]
    assert isinstance(top, list)
    scale = model.manifest.scaler.scale
    errors = [((t["actual"][0] - t["expected"][0]) / scale[features.index(t["feature"])]) ** 2
              for t in top]  # fmt: skip
    assert errors[0] / errors[1] == pytest.approx(top[0]["share"] / top[1]["share"], rel=0.01)


def test_assets_in_alarm_are_explained_within_their_bound_while_their_episodes_last(
    model: Artifact,
) -> None:
    """A storm (every pump faulty at once) with room for two: the same two are shown from
    their episode's opening to its end, each row its record against the model's
    reconstruction; then (no linger here) others may take their place."""
    fleet = Fleet(n_assets=6, seed=5)
    records = as_records(fleet.records(300, fleet.faults(300, first=100)))
    p = BatchProcessor(TOPICS, BatchSettings(max_record_bytes=2048),
                       AlertSettings(explain_assets=2, explain_linger_s=0))  # fmt: skip
    p.set_model(model)
    by_source = {(r.partition, r.offset): json.loads(r.value or b"") for r in records}
    features = list(model.manifest.features)
    views, opened = [], set()
    for i in range(0, len(records), 50):
        result = p.process(records[i : i + 50])
        opened |= {e["asset_id"] for e in events(result) if e["type"] == "open"}
        assert len(p.explained) <= 2
        views += result.stats.alarms
    assert len(opened) > 2  # a storm: more assets in alarm than the room
    shown = {v.asset_id for v in views}
    assert 2 <= len(shown) <= len(opened)
    for asset_id in shown:  # shown from an episode's opening to its resolve (maybe twice)
        mine = [v for v in views if v.asset_id == asset_id]
        assert not mine[-1].open
    assert None not in p.explained.values()  # every episode ended: no slot held open
    view = views[0]
    row = np.array([[view.actual]])
    assert view.expected == pytest.approx(model.detector.reconstruct(row)[0, 0], rel=1e-6)
    assert view.threshold == model.threshold.value
    assert view.features == tuple(features)
    assert any(np.allclose(view.actual, [rec["values"][f] for f in features])
               for rec in by_source.values() if rec.get("asset_id") == view.asset_id)  # fmt: skip


def test_records_of_one_asset_keep_their_order_across_batches(
    tmp_path: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    store = ModelStore(tmp_path)
    publish_random(store, "w2")  # window 2
    p = processor(store.load("w2"))
    records = as_records([(b"a", good("a", i)) for i in range(3)] + [(b"b", good("b", 0))])
    first = p.process(records[:1])
    assert (first.stats.scored, first.stats.warming_up) == (
        0,
        1,
    )  # a record too early to fill a window
    rest = p.process(records[1:])
    assert (rest.stats.scored, rest.stats.warming_up) == (2, 1)  # a's 2nd and 3rd; b's 1st warms up


def test_a_new_window_length_restarts_windows(
    model: Artifact, tmp_path: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    p = processor(model)
    assert p.process(as_records([(b"a", good("a", 0))])).stats.scored == 1
    store = ModelStore(tmp_path)
    publish_random(store, "w2")
    p.set_model(store.load("w2"))
    after = p.process(as_records([(b"a", good("a", 1))]))
    assert (after.stats.scored, after.stats.warming_up) == (0, 1)


def test_evicting_an_asset_with_an_open_episode_resolves_it(model: Artifact) -> None:
    fleet = Fleet(n_assets=1, seed=5)
    fault = fleet.faults(200, first=50, length=100)[0]  # a spike burst on pump-00
    records = as_records(fleet.records(fault.end, [fault]), partitions=1)
    p = processor(model, max_assets=1)
    opened = events(p.process(records))
    assert [e["type"] for e in opened] == ["open"]
    result = p.process([FakeRecord("in", 0, 999, b"x", good("other", 0))])
    assert result.stats.evicted == 1
    [closing] = events(result)
    assert closing["type"] == "resolve"
    assert closing["asset_id"] == "pump-00"
    assert closing["reason"] == "evicted"
    assert p.open_episodes == 0
