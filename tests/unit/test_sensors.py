"""Sensors that drop out (worker/sensors.py), through the worker's pure core.

Over any pattern of missing values (absent or null) and of gaps between records, the worker
must decide as a plain reading of the contract does: each feature's last report is all it
needs to know. A record is scored when every value it lacks was reported at most the bound
ago, with that value; otherwise it is incomplete (counted, not scored, never a dead letter),
and the next scored record starts the asset's window afresh (a window never spans a hole).
A feature unheard for longer than the bound opens one sensor_silent event, and its next
report ends it with one sensor_resolve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly.model import Artifact
from anomaly.settings import TopicSettings
from devtools.simulator import FEATURES
from tests.support.fakes import FakeRecord
from tests.support.models import Trained
from worker.pipeline import BatchProcessor, BatchResult
from worker.settings import AlertSettings, BatchSettings, SensorSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")
BOUND = 10.0
START = datetime(2026, 1, 1, tzinfo=UTC)
ASSET = "pump-1"


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def processor(model: Artifact, bound: float = BOUND) -> BatchProcessor:
    p = BatchProcessor(
        TOPICS, BatchSettings(), AlertSettings(), sensors=SensorSettings(stale_after_s=bound)
    )
    p.set_model(model)
    return p


def record(
    offset: int, t: float, values: dict[str, float | None], asset: str = ASSET
) -> FakeRecord:
    ts = (START + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
    raw = json.dumps({"asset_id": asset, "ts": ts, "values": values}).encode()
    return FakeRecord("in", 0, offset, asset.encode(), raw)


def sensor_events(result: BatchResult) -> list[tuple[str, str]]:
    decoded = [json.loads(m.value) for m in result.messages if m.topic == "alerts"]
    silences = ("sensor_silent", "sensor_resolve")  # what this contract says (not stuck values)
    return [(e["type"], e["feature"]) for e in decoded if e["type"] in silences]


@dataclass
class Contract:
    """The plain reading: each feature's last report (time, value), the silent ones."""

    first: float | None = None
    last: dict[int, tuple[float, float]] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)
    hole: bool = False  # an incomplete record since the last scored one

    def step(
        self, t: float, values: list[float], missing: set[int]
    ) -> tuple[list[float] | None, list[tuple[str, str]]]:
        """The row scored (None: incomplete) and the sensor events, in the worker's order."""
        if self.first is None:
            self.first = t
        for f in set(range(len(values))) - missing:
            self.last[f] = (t, values[f])
        events = []
        back = sorted(f for f in self.silent if f not in missing)
        events += [("sensor_resolve", FEATURES[f]) for f in back]
        self.silent -= set(back)
        fresh = {f for f in missing if f in self.last and t - self.last[f][0] <= BOUND}
        for f in sorted(missing - fresh):
            since = self.last[f][0] if f in self.last else self.first
            if f not in self.silent and t - since > BOUND:
                self.silent.add(f)
                events.append(("sensor_silent", FEATURES[f]))
        if missing - fresh:
            self.hole = True
            return None, events
        return [self.last[f][1] if f in missing else v for f, v in enumerate(values)], events


steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 4.0, 9.5, 10.0, 10.5, 25.0]),  # seconds since the last
        st.sets(st.integers(0, len(FEATURES) - 1), max_size=len(FEATURES) - 1),  # missing
        st.booleans(),  # null (True) or absent
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_missing_values_are_filled_while_fresh_and_silences_open_and_end_once(
    model: Artifact, steps: list[tuple[float, set[int], bool]]
) -> None:
    p = processor(model)
    contract = Contract()
    t = 0.0
    for offset, (gap, missing, null) in enumerate(steps):
        t += gap
        values = [float(offset * 10 + f) for f in range(len(FEATURES))]
        sent: dict[str, float | None] = {
            name: (None if f in missing else values[f])
            for f, name in enumerate(FEATURES)
            if f not in missing or null
        }
        before = p.assets.get(ASSET)[0].buffer.count
        result = p.process([record(offset, t, sent)])
        expected_row, expected_events = contract.step(t, values, missing)
        state = p.assets.get(ASSET)[0]
        assert not result.stats.dead_letters
        assert sensor_events(result) == expected_events
        if expected_row is None:
            assert result.stats.incomplete == 1
            assert state.buffer.count == before
        else:
            assert result.stats.incomplete == 0
            assert state.buffer.count == (1 if contract.hole else before + 1)
            contract.hole = False
            assert state.buffer.last().tolist() == np.array(expected_row, np.float32).tolist()
            assert sum(result.stats.filled.values()) == len(missing)
        assert p.silent == len(contract.silent)


def test_a_record_without_any_feature_is_still_a_dead_letter(model: Artifact) -> None:
    result = processor(model).process([record(0, 0.0, {"rpm": 1.0})])
    assert dict(result.stats.dead_letters) == {"missing_feature": 1}


def test_events_name_the_features_filled_in_their_window(model: Artifact) -> None:
    """A fault while a sensor is out: the open event says which values were filled."""
    p = processor(model, bound=1000.0)
    window = model.manifest.window
    normal = model.detector.scaler.center.tolist()
    opened: list[dict[str, object]] = []
    for i in range(window + 40):
        values: dict[str, float | None] = dict(zip(FEATURES, normal, strict=True))
        if i >= window:
            values["pressure"] = None  # dropped out, filled from its last value
            values["vibration"] = normal[FEATURES.index("vibration")] + 1e4  # a fault
        result = p.process([record(i, float(i), values)])
        opened += [e for e in map(json.loads, (m.value for m in result.messages)) if
                   e.get("type") == "open"]  # fmt: skip
    assert opened, "the fault opened no episode"
    assert opened[0]["filled"] == ["pressure"]
