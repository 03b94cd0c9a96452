"""Model contract checks on the synthetic plant: calibration holds, faults stand out."""

import json
from pathlib import Path

import numpy as np
import pytest

from anomaly.model import Artifact, ModelStore, calibrate, sliding_windows
from devtools import simulator
from tests.support.models import Trained, excess, settings_for, write_csv
from training.job import train


@pytest.fixture(scope="module")
def model(trained: Trained) -> Artifact:
    return trained.store.load_current()


def test_threshold_meets_its_target_rate_on_fresh_clean_data(model: Artifact) -> None:
    threshold = model.threshold
    assert threshold.method == "quantile"
    assert threshold.n_samples == 2000
    fresh = simulator.clean_rows(50_000, seed=7)
    realised = threshold.exceeds(model.detector.score(sliding_windows(fresh, 1)).score).mean()
    # The threshold is a quantile of 2,000 held-out scores: its true rate has a standard error
    # of sqrt(0.01 * 0.99 / 2000) = 0.0022; allow 3.5 of them.
    assert abs(realised - threshold.target_fpr) <= 0.0078


def test_pot_threshold_meets_a_low_rate_on_fresh_clean_data(model: Artifact) -> None:
    held_out = simulator.clean_rows(2000, seed=11)
    threshold = calibrate(model.detector.score(sliding_windows(held_out, 1)).score, 0.002)
    assert threshold.method == "pot"  # 4 expected exceedances: too few for a quantile
    fresh = simulator.clean_rows(200_000, seed=12)
    realised = threshold.exceeds(model.detector.score(sliding_windows(fresh, 1)).score).mean()
    assert 0.002 / 3 <= realised <= 0.002 * 3


SPIKES = np.arange(0, 400, 4)
ALL = np.arange(400)
FAULTS = {
    # name: (rows with the fault, the faulty records, the sensors the shares should name)
    "spike": lambda seg: (simulator.spike(seg, 3, SPIKES), SPIKES, {3}),
    "drift": lambda seg: (simulator.drift(seg, 2), np.arange(200, 400), {2}),
    "stuck": lambda seg: (simulator.stuck(seg, 4), ALL, {4}),
    "broken correlation": lambda seg: (simulator.broken_correlation(seg, 3), ALL, {0, 1}),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_injected_faults_score_above_threshold_and_shares_name_the_sensor(
    model: Artifact, fault: str
) -> None:
    segment = simulator.clean_rows(400, seed=9)
    rows, faulty, sensors = FAULTS[fault](segment)
    clean = model.detector.score(sliding_windows(segment, 1))
    scores = model.detector.score(sliding_windows(rows, 1))
    flagged = model.threshold.exceeds(scores.score[faulty])
    clean_rate = model.threshold.exceeds(clean.score).mean()
    assert flagged.mean() >= 0.5
    assert flagged.mean() >= 10 * max(clean_rate, 0.01)
    named = scores.shares[faulty][flagged].argmax(axis=1)
    assert np.isin(named, list(sensors)).mean() >= 0.9


def test_feature_shares_sum_to_one(model: Artifact) -> None:
    rows = simulator.drift(simulator.clean_rows(300, seed=4), 0)
    shares = model.detector.score(sliding_windows(rows, 1)).shares
    assert shares.shape == (300, len(simulator.FEATURES))
    assert np.all(shares >= 0)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-9)


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(2000, seed=5))
    probe = sliding_windows(simulator.clean_rows(500, seed=6), 4)

    def scores(store: str, seed: int) -> np.ndarray:
        settings = settings_for(data, tmp_path / store, window=4, epochs=5, seed=seed)
        train(settings)
        return ModelStore(tmp_path / store).load_current().detector.score(probe).score

    first = scores("a", seed=3)
    np.testing.assert_array_equal(first, scores("b", seed=3))
    assert not np.array_equal(first, scores("c", seed=4))


def _threshold(tmp_path: Path, name: str, rows: np.ndarray) -> float:
    data = tmp_path / f"{name}.csv"
    write_csv(data, rows)
    outcome = train(settings_for(data, tmp_path / name, epochs=30))
    return outcome.manifest.threshold.value


def test_a_sensor_quiet_in_the_fit_part_does_not_blow_up_the_threshold(tmp_path: Path) -> None:
    """SKAB's blind files: flow barely moves while the model is fitted (IQR 1e-4), then moves
    by a normal 0.1% of its level in the held-out part. Scaled by its IQR, that move is 400
    units and the calibrated threshold follows it up; the level floor keeps it in line."""
    rows = simulator.clean_rows(3000, seed=21)
    normal = _threshold(tmp_path, "normal", rows)
    quiet = rows.copy()
    quiet[:, 1] = 50.0 + np.random.default_rng(0).normal(scale=1e-4, size=len(rows))
    quiet[2400:, 1] += 0.04  # the held-out part (the last 20%)
    assert _threshold(tmp_path, "quiet", quiet) < 10 * normal


def test_calibration_warns_when_held_out_scores_lie_far_beyond_the_fit_part(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = simulator.clean_rows(3000, seed=22)
    rows[2400:, 4] += 1e4  # temperature jumps far beyond its range in the held-out part
    data = tmp_path / "jump.csv"
    write_csv(data, rows)
    with caplog.at_level("WARNING", logger="training.job"):
        outcome = train(settings_for(data, tmp_path / "store", epochs=10))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("times beyond the fit part's" in w and "temperature" in w for w in warnings)
    report = json.loads((Path(outcome.location) / "report.json").read_text())
    check = report["calibration_check"]
    assert check["exceeded"]
    assert check["beyond"][0] == "temperature"
    assert check["ratio"] > 100


def test_no_calibration_warning_on_clean_data(trained: Trained) -> None:
    report = json.loads((Path(trained.outcome.location) / "report.json").read_text())
    check = report["calibration_check"]
    assert not check["exceeded"]
    assert check["ratio"] < 10


def test_training_calibrates_the_residual_drift_that_the_loaded_model_serves(
    tmp_path: Path,
) -> None:
    """With a drift rate, the manifest carries the drift, calibrated on the held-out part at
    the threshold's target rate; fresh clean data drifts at about that rate, a slow drift of
    one sensor far more."""
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(6000, seed=1))
    outcome = train(settings_for(data, tmp_path / "store", {"drift_rate": 0.05}, epochs=30))
    loaded = ModelStore(tmp_path / "store").load_current()
    drift = loaded.detector.drift
    assert drift is not None
    assert drift == loaded.manifest.drift
    assert (drift.rate, drift.threshold.target_fpr) == (0.05, 0.01)
    assert drift.threshold.n_samples == 1200  # the held-out part: the latest 20%
    written = json.loads((Path(outcome.location) / "manifest.json").read_text())
    assert written["drift"]["rate"] == 0.05
    fresh = loaded.detector.score(sliding_windows(simulator.clean_rows(20_000, seed=7), 1))
    realised = (excess(drift, fresh.residual) > 1.0).mean()
    assert 0.01 / 4 <= realised <= 0.01 * 4  # averages of 1,200 correlated values: loose
    drifting = simulator.drift(simulator.clean_rows(2000, seed=8), 2)
    residual = loaded.detector.score(sliding_windows(drifting, 1)).residual
    assert (excess(drift, residual) > 1.0)[1000:].mean() > 0.5
