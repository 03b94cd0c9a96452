"""Operating states (anomaly/states.py): the rule read and applied, the start-up grace measured
from the training data's own restarts, the worker's records of a stopped pump neither scored
nor alarmed on, and the training job leaving them out and recording the rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from anomaly.model import ModelStore
from anomaly.states import (
    SETTLED,
    OperatingStates,
    StateRuleError,
    measure_grace,
    not_running,
    parse_rule,
    restarts,
    settling,
    stopped,
    stopped_rows,
)
from devtools import simulator
from devtools.simulator import PUMP, Fleet, Stop
from tests.support.fakes import as_records
from tests.support.models import Trained, edit_manifest, settings_for, write_csv
from tests.unit.test_pipeline import TOPICS
from training.job import train
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

FEATURES = simulator.FEATURES
SPEED = FEATURES.index("speed")


def test_a_rule_reads_comparisons_joined_by_and_before_or() -> None:
    rule = parse_rule("speed < 100 or current <= 0.5 and flow != 2", FEATURES)
    row = np.zeros(len(FEATURES))
    row[SPEED], row[FEATURES.index("current")] = 1500.0, 1.0
    assert not stopped(rule, row)
    row[FEATURES.index("current")], row[FEATURES.index("flow")] = 0.5, 3.0
    assert stopped(rule, row)  # current <= 0.5 and flow != 2
    row[FEATURES.index("flow")] = 2.0
    assert not stopped(rule, row)
    row[SPEED] = 99.0
    assert stopped(rule, row)
    row[SPEED] = float("nan")  # a missing speed says nothing
    assert not stopped(parse_rule("speed < 100", FEATURES), row)
    # as the manifest keeps it
    assert OperatingStates(stopped_when="speed < 100 or current <= 0.5").rule(FEATURES) == (
        parse_rule("speed < 100 or current <= 0.5", FEATURES)
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rpm < 100", "'rpm' is not a feature"),
        ("speed <", "is not a comparison"),
        ("speed ~ 3", "is not a comparison"),
        ("speed < 1.2.3", "is not a number"),
    ],
)
def test_a_rule_that_does_not_read_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(StateRuleError, match=says):
        parse_rule(text, FEATURES)


@given(
    st.sampled_from(
        [
            "speed < 100",
            "speed >= 3 and flow < 0",
            "current == 1 or speed > 2",
            "flow != 0 and speed <= 1 or pressure > 0.5",
        ]
    ),
    arrays(np.float64, (20, len(FEATURES)), elements=st.sampled_from([0.0, 1.0, 2.0, 3.0, 150.0])),
)
def test_the_rule_over_rows_answers_as_it_does_record_by_record(
    text: str, rows: np.ndarray
) -> None:
    rule = parse_rule(text, FEATURES)
    assert stopped_rows(rule, rows).tolist() == [stopped(rule, row) for row in rows]


def stopped_pump(n: int = 600, start: int = 200, end: int = 260) -> tuple[np.ndarray, np.ndarray]:
    fleet = Fleet(n_assets=1, seed=3, stops=(Stop("pump-00", start, end),))
    rows = np.array([list(json.loads(v)["values"].values()) for _, v in fleet.records(n)])
    return np.arange(n, dtype=np.float64), rows


def test_the_grace_is_the_longest_start_up_in_the_data() -> None:
    rule = parse_rule("speed < 100", FEATURES)
    ts, rows = stopped_pump()
    grace = measure_grace(rule, [(ts, rows)])
    assert grace is not None
    # back within the running range some records into the transient, then SETTLED in a row
    settled = np.all(np.abs(rows[260:] - rows[261:].mean(axis=0)) < 4 * rows[:200].std(axis=0),
                     axis=1)  # fmt: skip
    assert 1 <= grace <= 30
    assert settled[int(grace) + SETTLED :].any()
    shorter = stopped_pump(end=240)  # the same transient, after a shorter stop
    assert abs((measure_grace(rule, [shorter]) or 0) - grace) <= 2
    assert measure_grace(rule, [(ts[:230], rows[:230])]) is None  # no restart in the data


def test_stopped_rows_and_the_start_up_within_the_grace_are_not_running() -> None:
    rule = parse_rule("speed < 100", FEATURES)
    ts, rows = stopped_pump()
    stop, starting = not_running(rule, ts, rows, grace_s=12.0)
    assert np.flatnonzero(stop).tolist() == list(range(200, 260))
    assert np.flatnonzero(starting).tolist() == list(range(260, 272))
    _, none = not_running(rule, ts, rows, grace_s=0.0)
    assert not none.any()


def test_a_grace_under_a_second_still_covers_the_first_running_record() -> None:
    rule = parse_rule("speed < 100", FEATURES)
    ts, rows = stopped_pump()
    _, starting = not_running(rule, ts, rows, grace_s=0.5)  # records a second apart
    assert np.flatnonzero(starting).tolist() == [260]


def test_a_start_up_settles_at_the_first_of_settled_records_in_a_row() -> None:
    ts = np.array([0.0, 1, 3, 6, 10, 15, 21, 28, 36, 45, 55])  # uneven: each index tells
    ok = np.array([True] * 4 + [False] + [True] * 5 + [False])
    assert SETTLED == 5
    assert settling(ts, ok) == 15.0  # four in a row are not enough; the five from index 5
    assert settling(ts, ~ok) is None
    assert settling(ts[:10], ok[:10]) == 15.0  # the run may end the series


def test_each_restart_runs_until_the_next_stop_or_at_most_longest_records() -> None:
    rule = parse_rule("speed < 100", ("speed", "x"))
    speed = [0, 0, 1500, 1500, 1500, 0, 1500, 1500]
    rows = np.array([[v, float(i)] for i, v in enumerate(speed)])
    ts = np.arange(len(rows), dtype=np.float64) * 2
    found = restarts(rule, ts, rows)
    assert [t.tolist() for t, _ in found] == [[4.0, 6.0, 8.0], [12.0, 14.0]]
    assert [r[:, 1].tolist() for _, r in found] == [[2.0, 3.0, 4.0], [6.0, 7.0]]
    assert [t.tolist() for t, _ in restarts(rule, ts, rows, longest=2)] == [
        [4.0, 6.0],
        [12.0, 14.0],
    ]
    long = np.array([[0.0, 0.0]] + [[1500.0, 0.0]] * 3700)
    [(t, _)] = restarts(rule, np.arange(3701, dtype=np.float64), long)
    assert len(t) == 3600  # an hour of records a second apart, by default


def test_the_running_range_is_each_features_own_central_share() -> None:
    """Two features of different scales, running at 0..999 (x) and 1000..1999 (y): the range
    is each one's 0.5th to 99.5th percentile (about 5 to 994 for x, the restart's own records
    among them). A restart at x 10, y 1500 settles at once; one whose y sits at 1000.5 (below
    y's range, within x's) or whose x sits at -1 never does."""
    rule = parse_rule("speed < 100", ("speed", "x", "y"))
    running = np.array([[1500.0, float(v), 1000.0 + v] for v in range(1000)])
    ts = np.arange(1000 + 1 + SETTLED, dtype=np.float64)

    def grace(x: float, y: float) -> float | None:
        restart = np.array([[0.0, 50.0, 1050.0]] + [[1500.0, x, y]] * SETTLED)
        return measure_grace(rule, [(ts, np.concatenate([running, restart]))])

    assert grace(10.0, 1500.0) == 0.0
    assert grace(10.0, 1000.5) is None
    assert grace(-1.0, 1500.0) is None
    flat = np.array([[1500.0, 5.0]] * 100 + [[0.0, 5.0]] + [[1500.0, 5.0]] * SETTLED)
    flat_ts = np.arange(len(flat), dtype=np.float64)
    constant = parse_rule("speed < 100", ("speed", "x"))
    assert measure_grace(constant, [(flat_ts, flat)]) == 0.0  # a constant: its value, its range


@pytest.mark.parametrize(("running", "measured"), [(9, False), (10, True), (14, True)])
def test_the_grace_is_measured_from_twice_settled_running_records(
    running: int, measured: bool
) -> None:
    rule = parse_rule("speed < 100", ("speed", "x"))
    rows = np.array([[0.0, 0.0]] + [[1500.0, 1.0]] * running)
    ts = np.arange(len(rows), dtype=np.float64)
    assert (measure_grace(rule, [(ts, rows)]) is not None) is measured


@pytest.fixture
def stateful(trained: Trained, tmp_path: Path) -> ModelStore:
    """The session's model, with the rule `speed < 100` and a 10 s start-up grace."""
    store = ModelStore(trained.root)
    version = store.current_version()
    assert version is not None
    target = tmp_path / "store" / "versions" / version
    import shutil

    shutil.copytree(trained.root, tmp_path / "store")
    edit_manifest(target, lambda m: m.update(states={"stopped_when": "speed < 100",
                                                     "grace_s": 30.0}))  # fmt: skip
    return ModelStore(tmp_path / "store")


def test_a_stopped_pump_is_said_stopped_not_scored_and_raises_no_alarm(
    stateful: ModelStore,
) -> None:
    fleet = Fleet(n_assets=2, seed=5, stops=(Stop("pump-01", 100, 160),))
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings())
    p.set_model(stateful.load_current())
    records = as_records(fleet.records(300))
    results = [p.process(records[i : i + 50]) for i in range(0, len(records), 50)]
    events = [json.loads(m.value) for r in results for m in r.messages if m.topic == "alerts"]
    mine = [(e["type"], e["ts"]) for e in events if e["asset_id"] == "pump-01"]
    at = [simulator.timestamp(i).isoformat().replace("+00:00", "Z") for i in (100, 160)]
    assert mine == [("stopped", at[0]), ("started", at[1])], "said stopped, then started; no alarm"
    started = next(e for e in events if e["type"] == "started")
    assert started["grace_s"] == 30.0
    assert started["stopped_when"] == "speed < 100"
    assert sum(r.stats.stopped for r in results) == 60
    assert sum(r.stats.starting for r in results) == 30
    assert sum(r.stats.scored for r in results) == 600 - 90
    assert p.stopped_assets == 0
    half = p.process([])
    assert half.stats.stopped == 0


def test_without_a_rule_the_stop_alarms_as_an_anomaly(trained: Trained) -> None:
    fleet = Fleet(n_assets=2, seed=5, stops=(Stop("pump-01", 100, 160),))
    p = BatchProcessor(TOPICS, BatchSettings(), AlertSettings())
    p.set_model(trained.store.load_current())
    result = p.process(as_records(fleet.records(300)))
    opened = [json.loads(m.value) for m in result.messages if m.topic == "alerts"]
    assert any(e["type"] == "open" and e["asset_id"] == "pump-01" for e in opened)


def test_training_leaves_stopped_records_and_start_ups_out_and_records_the_rule(
    tmp_path: Path,
) -> None:
    fleet = Fleet(
        n_assets=1, seed=1, stops=(Stop("pump-00", 2000, 2300), Stop("pump-00", 4000, 4100))
    )
    rows = np.array([list(json.loads(v)["values"].values()) for _, v in fleet.records(6000)])
    data = tmp_path / "stops.csv"
    write_csv(data, rows)
    settings = settings_for(data, tmp_path / "store", epochs=5)
    settings = settings.model_copy(update={"states": settings.states.model_copy(
        update={"stopped_when": "speed < 100"})})  # fmt: skip
    outcome = train(settings, now=datetime(2026, 1, 2, tzinfo=UTC))
    states = outcome.manifest.states
    assert states is not None
    assert (states.stopped_when, states.grace_from) == ("speed < 100", "measured")
    assert 1 <= states.grace_s <= 40
    report = json.loads((Path(outcome.location) / "report.json").read_text())
    assert 400 < report["removed"]["not_running"] <= 400 + 2 * 40
    assert outcome.manifest.training.rows == 6000 - report["removed"]["not_running"]
    assert PUMP.stopped[SPEED] == 0.0


def test_a_refused_rule_says_what_would_read() -> None:
    with pytest.raises(StateRuleError) as comparison:
        parse_rule("speed ~ 3", ("speed", "flow"))
    assert str(comparison.value) == (
        "'speed ~ 3' is not a comparison: write <feature> <op> <number>, op one of !=, <, <=, "
        "==, >, >=, joined by 'and' / 'or'"
    )
    with pytest.raises(StateRuleError) as feature:
        parse_rule("rpm < 3", ("speed", "flow"))
    assert str(feature.value) == "'rpm' is not a feature of the model (speed, flow)"
