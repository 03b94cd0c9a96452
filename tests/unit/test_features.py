import numpy as np
import pytest

from anomaly.model.features import CLIP, RobustScaler, sliding_windows


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


def test_scaler_keeps_constant_and_quantised_features_finite() -> None:
    rows = np.zeros((100, 2))
    rows[:, 1] = 3.0
    rows[:5, 0] = 1.0  # IQR 0, std > 0
    scaler = RobustScaler.fit(rows)
    assert scaler.scale[0] == pytest.approx(rows[:, 0].std())
    assert scaler.scale[1] == 1.0
    assert np.all(np.isfinite(scaler.transform(rows)))


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
