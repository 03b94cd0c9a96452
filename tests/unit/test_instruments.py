"""Broken sensors against process faults: stuck, out of range, noisy (anomaly/instruments.py)."""

from typing import Literal

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.instrument_table import InstrumentTable, _put_rows
from anomaly.instruments import (
    BoolArray,
    Change,
    InstrumentRules,
    InstrumentState,
    SensorProfile,
    _median,
    faulted,
    sensor_faults,
    step,
    untrusted,
)
from anomaly.model.features import FloatArray
from devtools import simulator
from devtools.simulator import Fleet


def events(profile: SensorProfile, rows: FloatArray) -> list[tuple[int, Change]]:
    """Each record's changes, stepped from a fresh state, with the record's index."""
    state = InstrumentState.start(profile)
    return [(t, change) for t, row in enumerate(rows) for change in step(state, profile, row)]


def white(n: int, seed: int, scale: float | FloatArray = 1.0) -> FloatArray:
    """Three sensors of white noise (standard deviation `scale`) around 50, -3 and 7."""
    rng = np.random.default_rng(seed)
    return np.asarray(rng.normal(size=(n, 3)) * scale + np.array([50.0, -3.0, 7.0]))


@pytest.fixture(scope="module")
def pumps() -> SensorProfile:
    """The simulator's pumps, fitted on 1,500 clean records of each of eight."""
    fleet = Fleet(8, seed=1)
    return SensorProfile.fit([fleet.rows(i, 1500) for i in range(8)], fleet.features)


@pytest.fixture(scope="module")
def quiet() -> SensorProfile:
    return SensorProfile.fit([white(1500, seed=1), white(1500, seed=2)], ("a", "b", "c"))


def test_a_stuck_sensor_is_found_within_min_run_records_and_once(pumps: SensorProfile) -> None:
    fleet = Fleet(8, seed=2)
    fault = fleet.faults(400)[2]  # pump-02: `current` stuck over [134, 194)
    assert (fault.kind, fault.sensor) == ("stuck", "current")
    rows = simulator.inject(fleet.rows(2, 400), fault, seed=fleet.seed + 2)
    found = events(pumps, rows)
    current = simulator.FEATURES.index("current")
    assert pumps.limits.stuck_after[current] == pumps.rules.min_run == 8
    opened = fault.start + pumps.rules.min_run - 1  # the min_run-th record holding the value
    assert found == [
        (opened, Change(current, "stuck", True)),
        (fault.end + 1, Change(current, "stuck", False)),  # moved twice: behaves again
    ]
    mask = sensor_faults(pumps, rows)
    assert mask[:, current].sum() == fault.end + 1 - opened
    assert not np.delete(mask, current, axis=1).any()


def test_the_faulted_features_are_those_inside_a_fault(pumps: SensorProfile) -> None:
    rows = Fleet(8, seed=3).rows(0, 100)
    rows[40:, 5] = rows[40, 5]
    state = InstrumentState.start(pumps)
    for row in rows:
        step(state, pumps, row)
    assert faulted(state).tolist() == [f == 5 for f in range(8)]


def test_a_valve_twitching_at_its_stop_is_one_stuck_event(pumps: SensorProfile) -> None:
    rows = Fleet(8, seed=3).rows(0, 300)
    rows[50:250, 2] = -3.0 + 0.01 * (np.arange(200) // 12)  # a step every 12 records: stuck
    found = events(pumps, rows)
    assert [(t, c.opened) for t, c in found] == [(57, True), (251, False)]


def analyser(n: int, seed: int, hold: int = 5) -> FloatArray:
    """A continuous sensor, an analyser that holds each sample `hold` records, and a status
    (constant but for one toggle)."""
    rng = np.random.default_rng(seed)
    samples = np.repeat(rng.normal(size=n // hold + 1), hold)[:n]
    status = np.where(np.arange(n) < n // 2, 1.0, 2.0)
    return np.stack([rng.normal(size=n), samples, status], axis=1)


def test_a_sensor_held_in_training_is_not_stuck_by_runs_as_long() -> None:
    profile = SensorProfile.fit([analyser(1000, seed=4)], ("flow", "analyser", "status"))
    assert profile.longest_run[1] == 5
    assert profile.limits.stuck_after.tolist() == [8, 20, np.inf]
    rows = analyser(2000, seed=2)  # samples held 5 records, the status for 1,000 records
    assert not sensor_faults(profile, rows).any()
    assert not sensor_faults(profile, analyser(2000, seed=2, hold=2)).any()  # updated faster
    rows[600:640, 1] = rows[600, 1]  # the analyser stops updating for 40 records
    expected = [
        (619, Change(1, "stuck", True)),
        (645, Change(1, "stuck", False)),  # its second new sample since
    ]
    assert events(profile, rows) == expected
    assert Twins(profile, {"one": rows}).run(["one"] * 2000, batch=300) == expected


def test_a_value_far_out_of_range_is_found(pumps: SensorProfile) -> None:
    rows = Fleet(8, seed=3).rows(0, 200)
    rows[100:103, 3] = 32767.0  # a sentinel: vibration reads 32767 for three records
    assert events(pumps, rows) == [
        (100, Change(3, "out_of_range", True)),
        (103, Change(3, "out_of_range", False)),
    ]


def test_an_operators_range_is_out_of_range_too() -> None:
    train = white(500, seed=1)
    profile = SensorProfile.fit([train], ("a", "b", "c"), physical={"b": (None, 1.0)})
    rows = white(300, seed=2)
    rows[150, 1] = 2.0  # far inside the trained range's margin, above the operator's bound
    assert events(profile, rows) == [
        (150, Change(1, "out_of_range", True)),
        (151, Change(1, "out_of_range", False)),
    ]


def test_one_broken_transmitter_is_one_event_of_its_first_kind(pumps: SensorProfile) -> None:
    """A transmitter that fails low and stays there is out of range, then stuck: one event,
    which ends once the sensor behaves again (back in range, and moving)."""
    rows = Fleet(8, seed=3).rows(0, 200)
    rows[100:150, 4] = -1000.0
    assert events(pumps, rows) == [
        (100, Change(4, "out_of_range", True)),
        (151, Change(4, "out_of_range", False)),
    ]


@pytest.mark.parametrize("asset", range(8))
def test_the_simulators_process_faults_are_not_instrumentation(
    pumps: SensorProfile, asset: int
) -> None:
    """The simulator's faults on every pump: only the stuck ones are sensor faults."""
    fleet = Fleet(8, seed=2)
    fault = fleet.faults(400)[asset]
    rows = simulator.inject(fleet.rows(asset, 400), fault, seed=fleet.seed + asset)
    found = events(pumps, rows)
    if fault.kind == "stuck":
        assert {c.kind for _, c in found} == {"stuck"}
    elif fault.kind != "broken_correlation":  # a sensor made white noise: see the docs
        assert found == []


@pytest.mark.parametrize("feature", range(8))
def test_an_8_deviation_spike_or_a_6_deviation_drift_is_no_sensor_fault(
    pumps: SensorProfile, feature: int
) -> None:
    """On every sensor, from its highest point: a 6-record burst 8 training deviations up, a
    ramp to 6 deviations (the simulator's spikes and drifts measure the deviation on the fault's
    own records, less)."""
    fleet = Fleet(8, seed=1)
    deviation = np.concatenate([fleet.rows(i, 1500) for i in range(8)]).std(axis=0)[feature]
    rows = Fleet(8, seed=4).rows(0, 600)
    top = int(np.argmax(rows[100:500, feature])) + 100
    spiked, drifted = rows.copy(), rows.copy()
    spiked[top : top + 6, feature] += 8 * deviation
    drifted[top - 59 : top + 1, feature] += np.linspace(0, 6, 60) * deviation
    drifted[top + 1 :, feature] += 6 * deviation
    assert not sensor_faults(pumps, spiked).any()
    assert not sensor_faults(pumps, drifted).any()


def test_a_noise_jump_is_found_once(quiet: SensorProfile) -> None:
    rows = white(800, seed=3)
    rows[200:500, 0] = white(300, seed=4, scale=10.0)[:, 0]  # ten times the noise
    found = events(quiet, rows)
    window = quiet.rules.window
    assert [(c.feature, c.kind, c.opened) for _, c in found] == [
        (0, "noisy", True),
        (0, "noisy", False),
    ]
    (opened, _), (ended, _) = found
    assert 200 + window // 2 <= opened < 200 + window  # a majority of the window
    assert 500 <= ended < 500 + window


def test_a_short_burst_is_not_noise(quiet: SensorProfile) -> None:
    rows = white(400, seed=3)
    rows[200:206, 0] = white(6, seed=4, scale=10.0)[:, 0]
    rows[300:306, 1] += 8.0  # and a spike of 8 deviations on another sensor
    assert not sensor_faults(quiet, rows).any()


def test_noise_on_several_sensors_at_once_is_the_process(quiet: SensorProfile) -> None:
    rows = white(800, seed=3)
    rows[200:500, :2] = white(300, seed=4, scale=10.0)[:, :2]
    assert not sensor_faults(quiet, rows).any()
    rows[200:500, 1] = white(300, seed=5)[:, 1]  # the second sensor calm again
    assert sensor_faults(quiet, rows)[:, 0].any()


def test_a_fast_smooth_swing_of_the_process_is_not_noise(quiet: SensorProfile) -> None:
    """A swing of 30 deviations over 20 records: its changes are large, its roughness is not."""
    rows = white(600, seed=3)
    rows[200:400, 0] += 30 * np.sin(2 * np.pi * np.arange(200) / 20)
    assert not sensor_faults(quiet, rows).any()


def test_what_training_shows() -> None:
    """A sensor that alternates 0, 1 (with one spike), one that holds each value 5 records."""
    rows = np.stack([np.arange(300) % 2, np.arange(300) // 5], axis=1).astype(float)
    rows[100, 0] = 50.0
    profile = SensorProfile.fit([rows], ("alternating", "held"))
    assert (profile.low, profile.high) == ((0.0, 0.0), (50.0, 59.0))
    assert profile.step == (1.0, 1.0)
    assert profile.longest_run == (1, 5)
    assert profile.changing == pytest.approx((1.0, 59 / 299))
    assert profile.noise == (2.0, 1.0)  # a spike does not raise the median; the step is a floor


def test_runs_and_changes_stay_within_each_asset() -> None:
    """Two assets that each move every record, the second starting where the first ends and
    far from it: no run of two records and no change spans them."""
    first = np.stack([np.arange(100.0), np.arange(100.0)], axis=1)
    second = first[::-1] + np.array([0.0, 1e6])
    profile = SensorProfile.fit([first, second], ("a", "b"))
    assert profile.longest_run == (1, 1)
    assert profile.step == (1.0, 1.0)
    assert (profile.low, profile.high) == ((0.0, 0.0), (99.0, 1e6 + 99.0))


def test_the_profile_goes_through_json_as_it_was() -> None:
    profile = SensorProfile.fit([white(300, 1)], ("a", "b", "c"), physical={"a": (0.0, 100.0)})
    again = SensorProfile.model_validate_json(profile.model_dump_json())
    assert again == profile
    assert np.array_equal(again.limits.floor, profile.limits.floor)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([np.zeros((10, 3)), np.zeros((10, 2))], r"asset 1: rows of shape \(10, 2\), 3 features"),
        ([np.zeros(10)], r"asset 0: rows of shape \(10,\), 3 features"),
        ([np.zeros((0, 3))], "asset 0"),
        ([], "at least one asset"),
        ([np.full((10, 3), np.nan)], "finite"),
    ],
)
def test_fitting_refuses_rows_that_do_not_match_the_features(
    rows: list[FloatArray], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SensorProfile.fit(rows, ("a", "b", "c"))


def test_a_profile_refuses_values_that_do_not_match_its_features(quiet: SensorProfile) -> None:
    with pytest.raises(pydantic.ValidationError, match="noise: 2 values for 3 features"):
        SensorProfile.model_validate({**quiet.model_dump(), "noise": (1.0, 1.0)})
    with pytest.raises(pydantic.ValidationError, match="physical range of 'd'"):
        SensorProfile.model_validate({**quiet.model_dump(), "physical": {"d": (0.0, 1.0)}})
    with pytest.raises(pydantic.ValidationError, match="physical range of 'a'"):
        SensorProfile.model_validate({**quiet.model_dump(), "physical": {"a": (1.0, 0.0)}})
    with pytest.raises(pydantic.ValidationError, match="noise_margin must be above"):
        InstrumentRules(noise_margin=2.0, calm_margin=2.0)


# Streaming and offline: the same answers on any series. Sensors: continuous, quantised, held.
def _series(seed: int, n: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(n, 3)) * 0.3, axis=0) + rng.normal(size=(n, 3))
    walk[:, 1] = np.round(walk[:, 1])
    walk[:, 2] = np.repeat(walk[::3, 2], 3)[:n]
    return np.asarray(walk)


Injected = list[tuple[str, list[int], int, int]]


def _inject(rows: FloatArray, profile: SensorProfile, injected: Injected, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    for kind, f, at, length in injected:
        if kind == "held":
            length = int(min(profile.limits.stuck_after[f[0]], 50)) + length % 5 - 2
        part = rows[at : at + length, f]  # a copy: put back below
        if kind in ("stuck", "held"):
            part[:] = part[:1]
        elif kind == "range":
            part[:] = 1e6
        elif kind == "noise":
            part += rng.normal(size=part.shape) * 20
        elif kind == "missing":
            part[::3] = np.nan
        else:
            part[::4] += 0.5
        rows[at : at + length, f] = part
    return rows


def _profile(
    seed: int, window: int, min_run: int, margins: tuple[float, float], moving_share: float = 0.1
) -> SensorProfile:
    rules = InstrumentRules(
        window=window,
        min_run=min_run,
        noise_margin=margins[0],
        calm_margin=margins[1],
        moving_share=moving_share,
    )
    return SensorProfile.fit(
        [_series(seed, 150), _series(seed + 1, 40)], ("a", "b", "c"), rules=rules
    )


faults = st.lists(
    st.tuples(
        st.sampled_from(["stuck", "held", "range", "noise", "twitch", "missing"]),
        st.sampled_from([[0], [1], [2], [0, 1, 2]]),  # the sensors
        st.integers(0, 199),  # where
        st.integers(1, 80),  # for how long (held: about as long as it takes to be stuck)
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 200),
    window=st.integers(3, 15),
    min_run=st.integers(2, 6),
    margins=st.sampled_from([(2.0, 1.5), (4.0, 2.0), (8.0, 1.0)]),
    injected=faults,
)
def test_streaming_and_offline_give_the_same_answers(
    seed: int,
    n: int,
    window: int,
    min_run: int,
    margins: tuple[float, float],
    injected: Injected,
) -> None:
    profile = _profile(seed, window, min_run, margins)
    rows = _inject(_series(seed + 2, n), profile, injected, seed)
    state = InstrumentState.start(profile)
    streamed = []
    for row in rows:
        step(state, profile, row)
        streamed.append(faulted(state))
    assert np.array_equal(np.array(streamed), sensor_faults(profile, rows))


class Twins:
    """Assets' series stepped two ways: by `step` on each asset's own state, record by record
    (the reference), and in batches on one `InstrumentTable`, which must give the same answers;
    the marks per asset."""

    def __init__(self, profile: SensorProfile, series: dict[str, FloatArray], capacity: int = 1):
        self.profile, self.series = profile, series
        self.table = InstrumentTable(profile, capacity)
        self.states = {asset: InstrumentState.start(profile) for asset in series}
        self.marks: dict[str, list[BoolArray]] = {asset: [] for asset in series}
        # the table's readings not trusted (faulted or held), per asset, for `untrusted`
        self.distrust: dict[str, list[BoolArray]] = {asset: [] for asset in series}

    def run(self, stream: list[str], batch: int) -> list[tuple[int, Change]]:
        """Each asset's next record, one per name in `stream`, in batches of `batch`: the
        changes, each with its record's index in the stream."""
        found = []
        for begin in range(0, len(stream), batch):
            assets = stream[begin : begin + batch]
            rows, expected, marks = [], [], []
            for k, asset in enumerate(assets):
                rows.append(self.series[asset][len(self.marks[asset])])
                expected += [(k, c) for c in step(self.states[asset], self.profile, rows[-1])]
                marks.append(faulted(self.states[asset]))
                self.marks[asset].append(marks[-1])
            slots = self.table.slots(assets)  # new assets among known ones, as the worker's
            stepped = self.table.step_batch(slots, np.array(rows))
            assert stepped.changes == expected
            assert np.array_equal(stepped.faulted, np.array(marks))
            assert stepped.held is not None
            for asset, row in zip(assets, stepped.faulted | stepped.held, strict=True):
                self.distrust[asset].append(row)
            found += [(begin + k, change) for k, change in stepped.changes]
        return found

    def replace(self, asset: str, new: str) -> None:
        """`asset` released; `new` takes its row, from a fresh state."""
        row = self.table.slot(asset)
        self.table.release(asset)
        assert self.table.slot(new) == row

    def check_offline(self) -> None:
        """Each asset's marks: `sensor_faults` on the records it had, and what the table did
        not trust of them: `untrusted` (the offline replay's, anomaly/scoring.py)."""
        for asset, marks in self.marks.items():
            rows = self.series[asset][: len(marks)]
            width = rows.shape[1]
            assert np.array_equal(
                np.array(marks).reshape(-1, width), sensor_faults(self.profile, rows)
            )
            distrust = np.array(self.distrust[asset]).reshape(-1, width)
            assert np.array_equal(distrust, untrusted(self.profile, rows))


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    lengths=st.lists(st.integers(0, 160), min_size=1, max_size=4),
    injected=st.lists(faults, min_size=5, max_size=5),
    batch=st.integers(1, 60),
    released=st.integers(0, 3),
    window=st.integers(3, 15),
    min_run=st.integers(2, 6),
    margins=st.sampled_from([(2.0, 1.5), (4.0, 2.0), (8.0, 1.0)]),
    moving_share=st.sampled_from([0.1, 0.5, 0.95]),  # the higher, the more never stuck
)
def test_a_table_of_assets_gives_the_answers_of_each_assets_own_state(
    seed: int,
    lengths: list[int],
    injected: list[Injected],
    batch: int,
    released: int,
    window: int,
    min_run: int,
    margins: tuple[float, float],
    moving_share: float,
) -> None:
    """Several assets' series (faults injected, missing values among them), interleaved at
    random in batches: the table's answers are those of `step` on each asset's own state and
    of `sensor_faults` on each asset's series. Half way, one asset is released and a new one
    takes its row, from a fresh state. The table starts with room for one asset."""
    profile = _profile(seed, window, min_run, margins, moving_share)
    series = {
        f"a{i}": _inject(_series(seed + 2 + i, n), profile, injected[i], seed + i)
        for i, n in enumerate(lengths)
    }
    series["new"] = _inject(_series(seed + 9, 80), profile, injected[4], seed + 9)
    twins = Twins(profile, series)
    for asset in list(series)[:-1]:
        twins.table.slot(asset)
    assert twins.table.capacity == 1 << (len(lengths) - 1).bit_length()
    rng = np.random.default_rng(seed)
    stream = rng.permutation([f"a{i}" for i, n in enumerate(lengths) for _ in range(n)]).tolist()
    half = len(stream) // 2
    twins.run(stream[:half], batch)
    gone = f"a{released % len(lengths)}"
    twins.replace(gone, "new")
    twins.run(
        rng.permutation([a for a in stream[half:] if a != gone] + ["new"] * 80).tolist(), batch
    )
    twins.check_offline()
    assert len(twins.table) == len(lengths)


def test_a_missing_value_is_no_evidence_and_ends_a_stuck_fault_a_record_later(
    pumps: SensorProfile,
) -> None:
    """A NaN is never out of range nor held: a stuck sensor missing one value has moved twice
    by the record after it (its fault ends there), and is stuck again once it has held its
    value `stuck_after` records more. Streamed, in a table and offline alike."""
    rows = Fleet(8, seed=3).rows(0, 100)
    rows[40:, 5] = rows[40, 5]  # stuck from record 40
    rows[60, 5] = np.nan
    rows[70:72, 3] = np.nan  # missing two values: nothing
    expected = [
        (47, Change(5, "stuck", True)),
        (61, Change(5, "stuck", False)),
        (68, Change(5, "stuck", True)),
    ]
    assert events(pumps, rows) == expected
    twins = Twins(pumps, {"pump": rows})
    assert twins.run(["pump"] * 100, batch=30) == expected
    twins.check_offline()


def test_a_table_grows_keeping_its_assets_state(pumps: SensorProfile) -> None:
    """Twenty pumps arriving a few at a time, some with a stuck sensor, in a table with room
    for four: it doubles as they come, each pump keeps its row and its state."""
    fleet = Fleet(8, seed=2)
    series = {}
    for i in range(20):
        rows = fleet.rows(i % 8, 150)
        if i % 3 == 0:
            rows[60 + i :, i % 8] = rows[60 + i, i % 8]
        series[f"pump-{i}"] = rows
    twins = Twins(pumps, series, capacity=4)
    rng = np.random.default_rng(5)
    arriving = [f"pump-{i}" for i in range(20) for _ in range(150)]  # in order of arrival
    stream = [arriving[k] for k in np.argsort(np.arange(3000) + rng.integers(0, 400, 3000))]
    found = twins.run(stream, batch=200)
    assert twins.table.capacity == 32
    assert len(twins.table) == 20
    assert [twins.table.slot(f"pump-{i}") for i in range(20)] == list(range(20))
    assert len([change for _, change in found if change.opened]) >= 7
    twins.check_offline()


def test_one_batch_longer_than_the_window(quiet: SensorProfile) -> None:
    """One asset's 800 records in one batch, a noise jump among them: its roughness leaves the
    window from inside the batch."""
    rows = white(800, seed=3)
    rows[200:500, 0] = white(300, seed=4, scale=10.0)[:, 0]
    twins = Twins(quiet, {"one": rows})
    assert twins.run(["one"] * 800, batch=800) == events(quiet, rows)
    assert len(events(quiet, rows)) == 2


def test_an_empty_batch_and_a_released_asset(quiet: SensorProfile) -> None:
    table = InstrumentTable(quiet)
    stepped = table.step_batch(np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert stepped.faulted.shape == (0, 3)
    assert stepped.changes == []
    table.release("never seen")  # nothing
    assert (table.slot("a"), table.slot("b"), table.slot("a")) == (0, 1, 0)
    table.release("a")
    assert len(table) == 1
    assert table.slot("c") == 0  # the released row, reused
    assert table.slots(["b", "d", "c", "d"]).tolist() == [1, 2, 0, 2]  # d: a new row, once


def test_a_table_refuses_rows_it_does_not_hold_and_values_of_another_shape(
    quiet: SensorProfile,
) -> None:
    table = InstrumentTable(quiet)
    row = table.slot("a")
    table.slot("b")
    with pytest.raises(ValueError, match=r"slots \(2,\) and values \(2, 2\)"):
        table.step_batch(np.array([row, row]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"slots \(1, 1\)"):
        table.step_batch(np.array([[row]]), np.zeros((1, 3)))
    for slots in ([2], [-1]):
        with pytest.raises(ValueError, match="rows the table handed out"):
            table.step_batch(np.array(slots), np.zeros((1, 3)))
    table.release("a")
    with pytest.raises(ValueError, match="rows the table handed out and holds"):
        table.step_batch(np.array([row]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="capacity 0"):
        InstrumentTable(quiet, capacity=0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_rows_are_put_as_numpy_puts_them(order: Literal["C", "F"]) -> None:
    rng = np.random.default_rng(1)
    for shape in [(20,), (20, 3), (20, 2, 3)]:
        table = np.asarray(rng.normal(size=shape), order=order)
        expected = table.copy()
        index = np.array([3, 0, 17])
        rows = rng.normal(size=(3, *shape[1:]))
        expected[index] = rows
        _put_rows(table, index, rows)
        assert np.array_equal(table, expected)


def test_a_tables_bytes_per_asset(pumps: SensorProfile) -> None:
    """Per asset: the ring (`window` bytes a feature), 35 bytes a feature (the last two
    values, the run, the counts, the latches, the kind) and 9 (the ring's place, in use)."""
    table = InstrumentTable(pumps, capacity=10)
    assert table.nbytes == 10 * (61 * 8 + 35 * 8 + 9) == 10 * 777


def test_a_moving_sensor_held_longer_than_training_ever_held_it_is_not_trusted_at_once(
    pumps: SensorProfile,
) -> None:
    """Before its `stuck` event (min_run records), a moving sensor that holds a value for
    held_margin times its longest run in training, at least min_run / 2, is flagged `held`:
    the worker scores without it."""
    fleet = Fleet(8, seed=2)
    fault = fleet.faults(400)[2]  # pump-02: `current` stuck over [134, 194)
    rows = simulator.inject(fleet.rows(2, 400), fault, seed=fleet.seed + 2)
    current = simulator.FEATURES.index("current")
    held_at = int(pumps.limits.held_after[current])
    assert held_at == max(4, 3 * pumps.longest_run[current])
    assert held_at < pumps.rules.min_run
    table = InstrumentTable(pumps)
    slot = table.slot("pump-02")
    stepped = table.step_batch(np.full(len(rows), slot), rows)
    assert stepped.held is not None
    held = np.flatnonzero(stepped.held[:, current]).tolist()
    assert held == list(range(fault.start + held_at - 1, fault.end))  # its held_at-th record on
    assert not np.delete(stepped.held, current, axis=1).any()
    assert not stepped.faulted[fault.start : fault.start + pumps.rules.min_run - 1].any()


def test_a_reading_at_its_physical_bound_is_in_range_and_one_beyond_it_is_not() -> None:
    """An operator's range of [-3, 3] on `b`: exactly -3 and 3 are readings it allows."""
    profile = SensorProfile.fit(
        [white(1500, seed=1), white(1500, seed=2)], ("a", "b", "c"), physical={"b": (-3.0, 3.0)}
    )
    assert (profile.limits.floor[1], profile.limits.ceiling[1]) == (-3.0, 3.0)
    rows = white(40, seed=5) * [1.0, 0.0, 1.0]
    rows[:, 1] = [-3.0, 3.0, -3.0 - 1e-9, 3.0 + 1e-9] * 10
    marks = sensor_faults(profile, rows)[:, 1]
    assert marks[:4].tolist() == [False, False, True, True]
    state = InstrumentState.start(profile)
    stepped = []
    for row in rows[:4]:
        step(state, profile, row)
        stepped.append(bool(faulted(state)[1]))
    assert stepped == [False, False, True, True]


def test_the_median_change_is_the_largest_over_windows_or_of_all_when_fewer() -> None:
    column = np.array([[1.0], [5.0], [3.0], [9.0], [2.0]])
    assert _median(column[:3], 5).tolist() == [3.0]  # fewer than a window: of all
    assert _median(column[:4], 5).tolist() == [3.0]  # even: the lower one
    assert _median(np.empty((0, 2)), 5).tolist() == [0.0, 0.0]
    assert _median(column, 3).tolist() == [5.0]  # windows' medians 3, 5, 3
    assert _median(column, 4).tolist() == [3.0]  # lower medians 3, 3
    assert _median(np.array([[9.0], [9.0], [1.0], [1.0], [1.0]]), 2).tolist() == [9.0]  # first
    both = np.hstack([column, column[::-1] * 10])
    assert _median(both, 3).tolist() == [5.0, 50.0]  # each feature its own
    assert _median(both[:3], 5).tolist() == [3.0, 30.0]


def test_what_training_shows_of_a_constant_sensor_and_of_single_records() -> None:
    rows = white(200, seed=4)
    rows[:, 2] = 7.0  # never moved in training
    profile = SensorProfile.fit([rows], ("a", "b", "c"))
    assert profile.step[2] == 0.0
    assert profile.noise[2] == 0.0
    assert profile.changing[2] == 0.0
    assert profile.longest_run[2] == 200
    lone = SensorProfile.fit([rows[:1], rows[1:2]], ("a", "b", "c"))  # no change to read
    assert lone.changing == (0.0, 0.0, 0.0)
    assert lone.step == (0.0, 0.0, 0.0)
    rules = InstrumentRules(window=5)
    assert SensorProfile.fit([rows], ("a", "b", "c"), rules=rules).rules == rules
    with pytest.raises(ValueError, match=r"^fit needs the rows of at least one asset$"):
        SensorProfile.fit([], ("a", "b", "c"))


def _drawn(noise: float, still_share: float = 1e-3) -> SensorProfile:
    """A profile written down: sensor `a` moves by 1 a record in training (step 1), its
    roughness `noise`; `b` and `c` never moved. Window 3."""
    return SensorProfile(
        features=("a", "b", "c"), low=(-10.0, 0.0, 0.0), high=(10.0, 0.0, 0.0),
        step=(1.0, 0.0, 0.0), changing=(0.5, 0.0, 0.0), longest_run=(1, 200, 200),
        noise=(noise, 0.0, 0.0), rules=InstrumentRules(window=3, still_share=still_share),
    )  # fmt: skip


def _both(profile: SensorProfile, a: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sensor `a`'s faulted marks streamed (`step`) and offline (`sensor_faults`)."""
    rows = np.zeros((len(a), 3))
    rows[:, 0] = a
    state, streamed = InstrumentState.start(profile), []
    for row in rows:
        step(state, profile, row)
        streamed.append(bool(faulted(state)[0]))
    return np.array(streamed), sensor_faults(profile, rows)[:, 0]


def test_a_change_of_exactly_the_tolerance_is_a_held_value() -> None:
    """Tolerance 0.5 (half the step): a sensor moving by exactly 0.5 holds its value, and
    after 8 records (stuck_after) it is stuck; by 0.75, it moves."""
    profile = _drawn(noise=10.0, still_share=0.5)
    assert profile.limits.tolerance[0] == 0.5
    streamed, offline = _both(profile, [0.0, 0.5] * 10)
    assert streamed.tolist() == offline.tolist() == [False] * 7 + [True] * 13
    assert untrusted(profile, np.column_stack([[0.0, 0.5] * 10, np.zeros((20, 2))]))[7:, 0].all()
    moving, _ = _both(profile, [0.0, 0.75] * 10)
    assert not moving.any()


def test_a_roughness_of_exactly_its_bound_is_not_beyond_it() -> None:
    """Noise 0.25: loud above 1.0. A sensor alternating 0 and 0.5 is exactly that rough (its
    second differences are 1.0): not noisy; alternating 0 and 0.75 (1.5) it is."""
    exactly, offline = _both(_drawn(noise=0.25), [0.0, 0.5] * 10)
    assert not exactly.any()
    assert not offline.any()
    rough, rough_offline = _both(_drawn(noise=0.25), [0.0, 0.75] * 10)
    assert rough.any()
    assert rough_offline.tolist() == rough.tolist()


def test_a_noisy_sensor_is_fixed_once_no_rougher_than_calm() -> None:
    """Noise 0.5: loud above 2, calm above 1. Alternating 0 and 1.5 (roughness 3) it turns
    noisy; then alternating 0 and 0.5 (exactly 1: not above calm) it behaves again."""
    streamed, offline = _both(_drawn(noise=0.5), [0.0, 1.5] * 10 + [0.0, 0.5] * 10)
    assert streamed[:20].any()
    assert not streamed[25:].any()
    assert offline.tolist() == streamed.tolist()


def test_the_noise_counts_the_first_roughness_a_series_has() -> None:
    """A jump of 10 at the third record, then wiggles of 0.1: the first two roughnesses (10
    and 10) are the largest median of three, so the noise is 10."""
    wiggle = [10.0 + 0.1 * (-1) ** k for k in range(40)]
    rows = np.column_stack([[0.0, 0.0, 10.0, 10.0, 10.0, *wiggle], np.zeros(45), np.zeros(45)])
    profile = SensorProfile.fit([rows], ("a", "b", "c"), rules=InstrumentRules(window=3))
    assert profile.noise[0] == pytest.approx(10.0)
    assert profile.step[0] == pytest.approx(0.2)
