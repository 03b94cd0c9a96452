from statistics import NormalDist

import numpy as np
import pytest

from anomaly.model.features import CLIP, FLAT_LIMIT, RobustScaler, sliding_windows


def test_scaler_ignores_outliers_in_training_rows() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(loc=[10.0, -5.0], scale=[2.0, 0.5], size=(5000, 2))
    dirty = clean.copy()
    dirty[::20] = 1e6  # 5% wild readings
    robust = RobustScaler.fit(dirty)
    np.testing.assert_allclose(robust.center, [10.0, -5.0], atol=0.2)
    np.testing.assert_allclose(robust.scale, [2.0, 0.5], rtol=0.15)
    # The wild readings moved a mean/std scaler by orders of magnitude: the test can tell.
    assert dirty.std(axis=0).min() > 1e5


def test_the_floors_leave_a_continuous_sensor_alone() -> None:
    """Gaussian sensors (standard deviations 2 and 0.001): 400 rows at the normal distribution's
    quantiles, so their spread is exactly what it should be; the robust scale of Gaussian data
    is its standard deviation, and no floor (level, span, resolution) lifts it."""
    quantiles = [NormalDist().inv_cdf((i + 0.5) / 400) for i in range(400)]
    rows = np.array([[100.0 + 2.0 * q, 1e-3 * q] for q in quantiles])
    scaler = RobustScaler.fit(rows)
    np.testing.assert_allclose(scaler.scale, [2.0, 1e-3], rtol=0.01)
    np.testing.assert_allclose(scaler.center, [100.0, 0.0], atol=1e-9)
    assert scaler.flat is None


def test_a_quantised_sensor_is_scaled_by_no_less_than_its_resolution() -> None:
    """Pressure on 0.33 steps that sits on one step for 95% of training (IQR 0, std 0.07):
    a move of one step later is one scaled unit, not 4.6."""
    rows = np.full((400, 1), 0.33 * 3)
    rows[::20, 0] += 0.33
    scaler = RobustScaler.fit(rows)
    assert scaler.scale[0] == pytest.approx(0.33)
    assert scaler.transform(np.array([[0.33 * 4]]))[0, 0] == pytest.approx(1.0)


def test_a_sensor_barely_moving_in_training_is_scaled_by_a_share_of_its_level() -> None:
    """A flow of 120 that moved by 1e-4 in training: a later move of 0.1 (under 0.1%) is at most
    one scaled unit, not a thousand."""
    rows = 120.0 + np.random.default_rng(2).normal(scale=1e-4, size=(400, 1))
    scaler = RobustScaler.fit(rows)
    assert scaler.scale[0] == pytest.approx(0.12)
    assert abs(scaler.transform(np.array([[120.1]]))[0, 0]) <= 1.0


def test_a_sensor_that_steps_once_in_training_keeps_a_share_of_its_step() -> None:
    """A valve position at 10 for 85% of training and 12 after: the IQR (0 at 10) would make
    the next normal move to 12 a score of thousands; the span floor keeps it below 10."""
    rows = np.full((400, 1), 10.0)
    rows[340:, 0] = 12.0
    rows += np.random.default_rng(3).normal(scale=1e-6, size=rows.shape)
    scaler = RobustScaler.fit(rows)
    assert scaler.scale[0] >= 0.1 * 2.0
    assert abs(scaler.transform(np.array([[12.0]]))[0, 0]) <= 10.0


def test_a_sensor_flat_in_training_saturates_and_is_named() -> None:
    """Flat in training: leaving the constant raises the scaled value to FLAT_LIMIT, no more,
    while the other features keep the absurd-value clip only."""
    rows = np.random.default_rng(4).normal(size=(400, 3))
    rows[:, 1] = 3.0  # a setpoint
    rows[:, 2] = 0.0  # a sensor that read zero throughout: scale 1.0
    scaler = RobustScaler.fit(rows)
    assert scaler.flat_features() == (1, 2)
    assert scaler.scale[2] == 1.0
    out = scaler.transform(np.array([[1e9, 4.0, -5e3], [0.0, 3.0, 0.0]]))
    assert out[0].tolist() == [CLIP, FLAT_LIMIT, -FLAT_LIMIT]
    assert out[1, 1:].tolist() == [0.0, 0.0]


def test_transform_clips_absurd_values_to_finite_float32() -> None:
    scaler = RobustScaler(center=np.zeros(1), scale=np.ones(1))
    out = scaler.transform(np.array([[1e300], [-1e300], [2.0]]))
    assert out.dtype == np.float32
    assert out[:, 0].tolist() == [CLIP, -CLIP, 2.0]


def test_sliding_windows_end_at_each_record() -> None:
    rows = np.arange(20.0).reshape(10, 2)
    windows = sliding_windows(rows, 3)
    assert windows.shape == (8, 3, 2)
    for i in range(8):
        np.testing.assert_array_equal(windows[i], rows[i : i + 3])
    assert sliding_windows(rows, 11).shape == (0, 11, 2)
    np.testing.assert_array_equal(sliding_windows(rows, 1)[:, 0], rows)
