"""The residual drift (anomaly/model/drift.py): an exponential average of each sensor's signed
residual, in units of its spread on the fit part, against a threshold calibrated on the
held-out part."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.model import CalibrationError, Drift, Threshold
from tests.support.models import excess


def noise(rows: int, seed: int, features: int = 3) -> np.ndarray:
    """Residuals of a model that fits: white noise, a different size per sensor, off centre."""
    rng = np.random.default_rng(seed)
    out: np.ndarray = rng.normal(0.0, 1.0, (rows, features)) * np.array([0.5, 1.0, 2.0])[:features]
    return out + 0.3


def test_the_average_weighs_each_earlier_record_less_by_one_minus_the_rate() -> None:
    """z_t = sum over i <= t of rate (1 - rate)^(t - i) (residual_i - centre); the drift is the
    largest |z_f| / spread_f, over the threshold."""
    drift = Drift(rate=0.2, center=(0.5, -1.0), spread=(2.0, 0.5), threshold=Threshold(
        value=1.5, method="quantile", target_fpr=0.01, n_samples=100))  # fmt: skip
    residuals = noise(30, 3, features=2)
    centred = residuals - np.array([0.5, -1.0])
    for t, value in enumerate(excess(drift, residuals)):
        weights = 0.2 * 0.8 ** np.arange(t, -1, -1)
        z = weights @ centred[: t + 1]
        assert value == pytest.approx(np.max(np.abs(z) / np.array([2.0, 0.5])) / 1.5)


def test_it_is_calibrated_to_the_target_rate_on_held_out_residuals() -> None:
    drift = Drift.fit([noise(4000, 1), noise(4000, 5)], [noise(100_000, 2)], 0.05, 0.01)
    # the centre is the residuals' mean; each spread scales with its sensor's noise
    assert drift.center == pytest.approx((0.3, 0.3, 0.3), abs=0.05)
    spread = np.array(drift.spread)
    # an average at rate r of white noise of std s has std s * sqrt(r / (2 - r))
    assert spread == pytest.approx(np.array([0.5, 1.0, 2.0]) * np.sqrt(0.05 / 1.95), rel=0.1)
    assert drift.threshold.method == "quantile"
    assert (drift.threshold.target_fpr, drift.threshold.n_samples) == (0.01, 100_000)
    # new residuals of the same kind drift at about the target rate
    assert np.mean(excess(drift, noise(100_000, 7)) > 1.0) == pytest.approx(0.01, abs=0.004)


def test_a_small_bias_that_stays_drifts_and_the_same_size_of_noise_does_not() -> None:
    """A bias of half the noise on one sensor: one record of it says nothing, twenty do."""
    drift = Drift.fit([noise(4000, 1)], [noise(20_000, 2)], 0.05, 0.01)
    residuals = noise(400, 3)
    residuals[200:, 1] += 0.5  # the middle sensor, std 1
    crossed = excess(drift, residuals) > 1.0
    assert crossed[:200].mean() < 0.1
    assert crossed[260:].mean() > 0.8
    # the average forgets the bias once it goes
    residuals[300:, 1] -= 0.5
    assert (excess(drift, residuals) > 1.0)[360:].mean() < 0.1


def test_a_new_asset_or_one_of_other_features_starts_from_zero() -> None:
    drift = Drift(rate=0.5, center=(0.0, 0.0), spread=(1.0, 1.0), threshold=Threshold(
        value=2.0, method="quantile", target_fpr=0.01, n_samples=100))  # fmt: skip
    z, excess = drift.advance(None, np.array([4.0, -2.0]))
    assert z.tolist() == [2.0, -1.0]
    assert excess == 1.0  # max |z| / spread / threshold
    z, excess = drift.advance(z, np.array([0.0, -3.0]))
    assert (z.tolist(), excess) == ([1.0, -2.0], 1.0)
    z, _ = drift.advance(np.array([5.0, 5.0, 5.0]), np.array([4.0, 0.0]))  # another model's
    assert z.tolist() == [2.0, 0.0]


def test_a_sensor_that_never_moves_in_fit_does_not_divide_by_zero() -> None:
    fit, held = noise(2000, 1), noise(2000, 2)
    fit[:, 0] = held[:, 0] = 0.0
    drift = Drift.fit([fit], [held], 0.05, 0.01)
    assert drift.spread[0] > 0
    assert np.isfinite(excess(drift, held)).all()


def test_held_out_residuals_that_never_move_are_refused_naming_the_setting() -> None:
    flat = np.zeros((2000, 2))
    with pytest.raises(CalibrationError, match="TRAINING_CALIBRATION__DRIFT_RATE=0"):
        Drift.fit([flat], [flat], 0.05, 0.01)
