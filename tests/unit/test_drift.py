"""The residual drift (anomaly/model/drift.py): an exponential average of each sensor's signed
residual, in units of its spread on the fit part, against a threshold calibrated on the
held-out part."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydantic import ValidationError

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
    with pytest.raises(CalibrationError) as refused:
        Drift.fit([flat], [flat], 0.05, 0.01)
    assert str(refused.value) == (
        "the held-out part's residuals never drift (every average is 0): no drift threshold "
        "(set TRAINING_CALIBRATION__DRIFT_RATE=0 to go without it)"
    )


def test_held_out_residuals_quieter_than_the_fit_parts_give_a_threshold_under_1() -> None:
    quiet = 0.3 + (noise(4000, 2) - 0.3) * 0.01  # the same centre, a hundredth of the noise
    drift = Drift.fit([noise(4000, 1)], [quiet], 0.05, 0.01)
    assert 0 < drift.threshold.value < 1


def test_the_threshold_uses_the_method_asked_for() -> None:
    """200 held-out values at 1%: `auto` takes POT (2 expected above: too few for the
    quantile), `quantile` is asked for and possible (200 >= 1 / 0.01)."""
    assert Drift.fit([noise(4000, 1)], [noise(200, 2)], 0.05, 0.01).threshold.method == "pot"
    asked = Drift.fit([noise(4000, 1)], [noise(200, 2)], 0.05, 0.01, "quantile")
    assert asked.threshold.method == "quantile"


def test_the_spread_is_that_of_the_average_once_it_has_forgotten_its_start() -> None:
    """Rate 0.5 on 12 fit records: the start takes min(12 // 2, ceil(3 / 0.5)) = 6 records.
    The residuals are chosen so that the average z (z_t = z_(t-1) + 0.5 (x_t - z_(t-1)), from
    0) runs 1/6 six times, then 1, -1, 1, -1, 1, -1: x_t = 2 z_t - z_(t-1) gives 1/3, then 1/6
    five times, 2 - 1/6, then -3, 3, -3, 3, -3; their mean is 0 (the centre). The last six
    averages have a standard deviation of exactly 1; with the first two or four kept it
    would be less (0.87 from the fifth record on)."""
    x = np.array([1 / 3] + [1 / 6] * 5 + [2 - 1 / 6, -3, 3, -3, 3, -3])[:, None]
    drift = Drift.fit([x], [noise(2000, 2, features=1)], 0.5, 0.01)
    assert drift.center == pytest.approx((0.0,), abs=1e-12)
    assert drift.spread == pytest.approx((1.0,), rel=1e-9)


def test_a_zero_spread_is_refused_without_dividing_by_it() -> None:
    threshold = Threshold(value=2.0, method="quantile", target_fpr=0.01, n_samples=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn: an error here
        with pytest.raises(ValidationError, match="spread values must be finite and above 0"):
            Drift(rate=0.5, center=(0.0,), spread=(0.0,), threshold=threshold)
