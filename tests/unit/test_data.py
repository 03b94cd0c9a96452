"""Reading training files, and refusing unusable data before anything is published."""

import json
from pathlib import Path

import numpy as np
import pytest

from anomaly.model import CalibrationError, ModelStore
from devtools import simulator
from tests.support.models import settings_for, write_csv
from training.data import DataError, read_history
from training.job import train
from training.settings import DataSettings, TrainingSettings


def test_reads_semicolon_csv_with_timestamps_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "skab-like.csv"
    path.write_text(
        "datetime;a;b;anomaly\n"
        "2020-03-09 10:14:35;3;30;0\n"
        "2020-03-09 10:14:33;1;10;0\n"
        "2020-03-09 10:14:34;2;20;1\n"
    )
    history = read_history(
        DataSettings(path=path, delimiter=";", timestamp_column="datetime", exclude=("anomaly",))
    )
    assert history.features == ("a", "b")
    [series] = history.series
    np.testing.assert_array_equal(series.values, [[1, 10], [2, 20], [3, 30]])
    assert history.time_range()[0] is not None


def test_reads_json_lines_of_input_records_per_asset(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    lines = [
        {"asset_id": asset, "ts": f"2026-11-21T10:00:0{i}Z", "values": {"x": i, "y": -i}}
        for i in range(4)
        for asset in ("pump-1", "pump-2")
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    history = read_history(DataSettings(path=path))
    assert history.features == ("x", "y")
    assert [s.asset_id for s in history.series] == ["pump-1", "pump-2"]
    fit, held = history.split_by_time(0.25)
    assert (fit.rows, held.rows) == (6, 2)
    assert all(s.ts.max() < h.ts.min() for s in fit.series for h in held.series)


@pytest.mark.parametrize(
    ("text", "settings", "message"),
    [
        ("", {}, "is empty: expected a header line"),
        ("ts,a,b\n", {"timestamp_column": "ts"}, "holds no data rows"),
        ("ts,a\n1,2\n", {"features": ("a", "pressure")}, "has no column 'pressure'"),
        ("ts,a\n1,2\n", {"timestamp_column": "time"}, "has no column 'time'"),
        ("ts,a,b\n1,2,abc\n", {"timestamp_column": "ts"}, ":2: column 'b' holds 'abc', not a"),
        ("ts,a,b\n1,2,3\n2,inf,3\n", {"timestamp_column": "ts"}, ":3: column 'a' holds 'inf'"),
        ("ts,a,b\n1,2\n", {"timestamp_column": "ts"}, "2 fields, the header has 3"),
        ("ts,a\nmonday,2\n", {"timestamp_column": "ts"}, "neither ISO 8601 nor epoch seconds"),
        ("d,a\n2020-01-01,1\n", {}, "column 'd' holds '2020-01-01', not a number"),
    ],
)  # fmt: skip
def test_unusable_csv_is_refused_with_a_message_naming_it(
    tmp_path: Path, text: str, settings: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_history(DataSettings.model_validate({"path": path, **settings}))


def test_bad_json_record_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"asset_id": "a", "ts": "2026-11-21T10:00:00Z", "values": {"x": 1.0}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "values": {"x": "1"}}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: feature 'x' is not a number"):
        read_history(DataSettings(path=path))


def assert_nothing_published(store: Path) -> None:
    assert ModelStore(store).current_version() is None
    assert ModelStore(store).list_versions() == []
    assert not list(store.glob(".staging-*"))


def test_fewer_rows_than_one_window_publishes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "short.csv"
    write_csv(data, simulator.clean_rows(100, seed=0))
    with pytest.raises(DataError, match="fewer rows than one window"):
        train(settings_for(data, tmp_path / "store", window=30))
    assert_nothing_published(tmp_path / "store")


def test_a_rate_the_held_out_part_cannot_support_publishes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "small.csv"
    write_csv(data, simulator.clean_rows(200, seed=0))
    calibration = {"target_fpr": 0.001, "method": "quantile"}
    settings = settings_for(data, tmp_path / "store", calibration, epochs=2)
    with pytest.raises(CalibrationError, match="below 1/n"):
        train(settings)
    assert_nothing_published(tmp_path / "store")


def test_rows_all_at_one_time_leave_no_fit_part_and_publish_nothing(tmp_path: Path) -> None:
    data = tmp_path / "one-instant.csv"
    data.write_text("ts,a,b\n" + "2026-11-21T10:00:00Z,1,2\n" * 50)
    with pytest.raises(DataError, match="the fit part has no window of 10"):
        train(TrainingSettings(data={"path": data, "timestamp_column": "ts"},
                               store={"path": tmp_path / "store"}))  # fmt: skip
    assert_nothing_published(tmp_path / "store")


def test_a_short_history_trains_a_windowed_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SKAB's protocol: 400 rows. With a 60-row window the held-out 80 rows give 21 scores:
    # the exponential tail calibrates them, and the gate checks the calibration part.
    data = tmp_path / "short.csv"
    write_csv(data, simulator.clean_rows(400, seed=0))
    settings = TrainingSettings(
        data={"path": data, "timestamp_column": "timestamp"},
        model={"kind": "dense", "window": 60, "epochs": 20}, store={"path": tmp_path / "store"},
    )  # fmt: skip
    with caplog.at_level("INFO", logger="training.job"):
        outcome = train(settings)
    assert outcome.manifest.threshold.method == "exp"
    assert outcome.manifest.training.holdout_windows == 21
    assert "the gate checks the calibration part instead" in caplog.text
    assert outcome.decision.promoted
    assert ModelStore(tmp_path / "store").load_current().manifest.window == 60


def test_the_margin_widens_the_threshold_and_the_gate_checks_the_calibration(
    tmp_path: Path,
) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(4000, seed=2))
    calibration: dict[str, object] = {"target_fpr": 0.05, "margin": 2.0}
    settings = settings_for(data, tmp_path / "store", calibration, epochs=10)
    outcome = train(settings.model_copy(update={"gate": settings.gate.model_copy(
        update={"fraction": 0.5})}))  # fmt: skip
    threshold = outcome.manifest.threshold
    assert threshold.margin == 2.0
    assert threshold.method == "quantile"
    manifest = json.loads((Path(outcome.location) / "manifest.json").read_text())
    assert manifest["threshold"]["margin"] == 2.0
    figures = outcome.decision.figures
    calibrated, widened = figures["candidate_fpr"], figures["candidate_fpr_with_margin"]
    assert isinstance(calibrated, float)
    assert isinstance(widened, float)
    assert 0.025 <= calibrated <= 0.1  # the calibrated value holds the target
    assert widened < calibrated
    assert outcome.decision.promoted, outcome.decision.reasons


def test_a_first_run_keeps_its_first_fit_when_cleaning_would_starve_calibration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = simulator.clean_rows(400, seed=1)
    for start in range(40, 320, 40):  # spikes the first fit flags, 40 rows apart: without
        rows[start : start + 3, 2] += 30 * simulator.sensor_std(rows)[2]  # them, no window
    data = tmp_path / "short.csv"
    write_csv(data, rows)
    settings = TrainingSettings(
        data={"path": data, "timestamp_column": "timestamp"},
        model={"window": 60, "epochs": 20}, store={"path": tmp_path / "store"},
    )  # fmt: skip
    with caplog.at_level("INFO", logger="training.job"):
        outcome = train(settings)
    assert "keeping the first fit" in caplog.text
    assert outcome.removed["first_fit"] == 0
    assert outcome.manifest.training.holdout_windows == 21  # all 80 held-out rows
