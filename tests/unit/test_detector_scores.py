"""The detector's arithmetic on a graph whose reconstruction is known by hand: `factor` times
the scaled window, behind a scaler with a centre and a scale, so that every score, share,
residual and reconstruction can be written down."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.model import Detector, RobustScaler
from anomaly.model import detector as detector_module
from anomaly.model.detector import errors
from tests.support.graphs import mixing, scaled

CENTER, SCALE = np.array([1.0, -2.0, 0.5]), np.array([2.0, 4.0, 0.5])


def detector(factor: float) -> Detector:
    return Detector(RobustScaler(center=CENTER, scale=SCALE), scaled(factor, 3))


def windows(n: int = 5, window: int = 4, seed: int = 0) -> np.ndarray:
    """Raw windows whose scaled values stay well inside the scaler's clip."""
    scaled_values = np.random.default_rng(seed).uniform(-2, 2, size=(n, window, 3))
    raw: np.ndarray = scaled_values * SCALE + CENTER
    return raw


def test_scores_shares_and_residuals_are_the_reconstruction_errors_written_out() -> None:
    raw = windows()
    x = (raw - CENTER) / SCALE  # what the graph sees
    error = (0.5 - 1.0) * x  # it rebuilds half of each value
    scores = detector(0.5).score(raw, reconstruct=True)
    per_feature = (error**2).sum(axis=1)
    np.testing.assert_allclose(scores.score, per_feature.sum(axis=1) / (4 * 3), rtol=1e-5)
    np.testing.assert_allclose(scores.shares, per_feature / per_feature.sum(axis=1)[:, None],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(scores.residual, error[:, -1], rtol=1e-5, atol=1e-6)
    assert scores.score.dtype == scores.shares.dtype == scores.residual.dtype == np.float64
    assert scores.rebuilt is not None
    np.testing.assert_allclose(scores.rebuilt, 0.5 * x, rtol=1e-6)
    assert detector(0.5).score(raw).rebuilt is None  # kept only when asked


def test_a_perfect_reconstruction_scores_zero_and_shares_the_blame_evenly() -> None:
    scores = detector(1.0).score(windows(n=2))
    assert scores.score.tolist() == [0.0, 0.0]
    assert scores.shares.tolist() == [[1 / 3] * 3] * 2
    assert not scores.residual.any()


def test_shares_of_a_small_error_are_its_own_split() -> None:
    """A window whose summed squared error is below 1 splits it as any other does."""
    raw = CENTER + SCALE * np.array([[[0.1, 0.2, 0.0], [0.3, 0.0, 0.1]]])
    shares = detector(0.0).score(raw).shares  # rebuilt as zeros: the errors are the values
    np.testing.assert_allclose(shares, [[0.10 / 0.15, 0.04 / 0.15, 0.01 / 0.15]], rtol=1e-5)


@pytest.mark.parametrize("chunk", [3, 4])
def test_chunks_score_as_one_pass(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Windows beyond SCORE_CHUNK go through in several passes (two, three) with the same
    results, the reconstructions of every pass kept in order."""
    raw = windows(n=7)
    whole = detector(0.25).score(raw, reconstruct=True)
    expected = detector(0.25).reconstruct(raw)
    monkeypatch.setattr(detector_module, "SCORE_CHUNK", chunk)
    chunked = detector(0.25).score(raw, reconstruct=True)
    for name in ("score", "shares", "residual", "rebuilt"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    np.testing.assert_array_equal(detector(0.25).reconstruct(raw), expected)
    fresh = windows(n=7, seed=chunk)  # values no earlier array held: every window computed
    np.testing.assert_allclose(detector(0.25).reconstruct(fresh),
                               0.25 * (fresh - CENTER) + CENTER, rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_reconstruction_is_in_the_sensors_units() -> None:
    raw = windows()
    rebuilt = detector(0.5).reconstruct(raw)
    np.testing.assert_allclose(rebuilt, 0.5 * (raw - CENTER) + CENTER, rtol=1e-5, atol=1e-6)
    assert rebuilt.shape == raw.shape
    assert rebuilt.dtype == np.float64
    scores = detector(0.5).score(raw, reconstruct=True)
    assert scores.rebuilt is not None
    np.testing.assert_allclose(detector(0.5).expected(scores.rebuilt), rebuilt, rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (5, 4, 2), (5, 4, 4), (2, 5, 4, 3)])
def test_windows_of_another_shape_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected windows of shape \(batch, window, 3\)"):
        detector(0.5).score(np.zeros(shape))


def test_errors_sum_over_the_window_and_keep_the_last_records_residual() -> None:
    rebuilt = np.array([[[1.0, 2.0], [3.0, 5.0]]], dtype=np.float32)
    scaled_values = np.array([[[0.0, 0.0], [1.0, 1.0]]], dtype=np.float32)
    squared, last = errors(rebuilt, scaled_values)
    assert squared.tolist() == [[1.0 + 4.0, 4.0 + 16.0]]
    assert last.tolist() == [[2.0, 4.0]]
    assert squared.dtype == last.dtype == np.float64


# -- judged without some sensors (`without`: a sensor out of order, anomaly/instruments.py) --

# Feature 0 rebuilt as the mean of features 1 and 2, which rebuild themselves: only feature 0
# can be wrong, and its imputed value (from 1 and 2) is known.
MIX = [[0.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.0, 1.0]]


def test_without_a_sensor_the_others_error_alone_is_the_score_on_the_same_scale() -> None:
    d = Detector(RobustScaler(center=CENTER, scale=SCALE), mixing(MIX))
    raw = windows(n=4)
    x = (raw - CENTER) / SCALE
    error0 = x[..., 0] - (x[..., 1] + x[..., 2]) / 2  # feature 0's error, scaled units
    missing = np.array([[False, True, False], [True, False, False], [False, False, False],
                        [True, True, True]])  # fmt: skip
    got = d.without(raw, missing)
    window = raw.shape[1]
    # counted: 0 and 2 (sensor 1 imputed as itself: no error; sensor 0's error over 2 counted)
    assert got[0] == pytest.approx((error0[0] ** 2).sum() / (window * 2), rel=1e-5)
    # sensor 0 imputed from the others: nothing wrong is left
    assert got[1] == pytest.approx(0.0, abs=1e-9)
    # none missing: the score itself
    assert got[2] == pytest.approx(d.score(raw[2:3]).score[0], rel=1e-5)
    assert got[3] == 0.0  # none counted
    kept = d.score(raw, reconstruct=True).rebuilt
    np.testing.assert_allclose(d.without(raw, missing, kept), got, rtol=1e-6)
    assert got.dtype == np.float64
    assert got.shape == (4,)


def chained() -> Detector:
    """Feature 0 rebuilt as feature 1, feature 1 as half itself plus feature 2, feature 2 as
    itself."""
    return Detector(RobustScaler(center=CENTER, scale=SCALE),
                    mixing([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 1.0]]))  # fmt: skip


def test_a_missing_sensor_is_imputed_once_from_the_network_and_the_others_judged_on_it() -> None:
    """Feature 0 rebuilt as feature 1, feature 1 as half itself plus feature 2, feature 2 as
    itself. Sensor 1 missing: it is imputed once as 0.5 x1 + x2 (IMPUTE_PASSES, 1), and
    sensor 0's error is then x0 less that; sensor 2's is nil."""
    d = chained()
    raw = windows(n=3)
    x = (raw - CENTER) / SCALE
    imputed = 0.5 * x[..., 1] + x[..., 2]
    missing = np.array([[False, True, False]] * 3)
    expected = ((x[..., 0] - imputed) ** 2).sum(axis=1) / (raw.shape[1] * 2)
    np.testing.assert_allclose(d.without(raw, missing), expected, rtol=1e-5)


def test_alone_among_the_missing_a_sensor_is_judged_by_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above, sensors 1 and 2 missing: sensor 0 counted alone (its own mean error); with
    two passes, the second imputes sensor 1 again from the first's values."""
    d = chained()
    raw = windows(n=3)
    x = (raw - CENTER) / SCALE
    once = 0.5 * x[..., 1] + x[..., 2]
    missing = np.array([[False, True, True]] * 3)
    window = raw.shape[1]
    np.testing.assert_allclose(
        d.without(raw, missing), ((x[..., 0] - once) ** 2).sum(axis=1) / window, rtol=1e-5
    )
    monkeypatch.setattr(detector_module, "IMPUTE_PASSES", 2)
    twice = 0.5 * once + x[..., 2]
    np.testing.assert_allclose(
        d.without(raw, missing), ((x[..., 0] - twice) ** 2).sum(axis=1) / window, rtol=1e-5
    )
