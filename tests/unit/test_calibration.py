import numpy as np
import pytest

from anomaly.model import CalibrationError, calibrate
from anomaly.model.calibration import (
    asset_thresholds,
    exp_threshold,
    pot_threshold,
    quantile_threshold,
)


def test_quantile_leaves_at_most_the_target_rate_above() -> None:
    scores = np.random.default_rng(0).exponential(size=1000)
    threshold = quantile_threshold(scores, 0.05)
    assert threshold.method == "quantile"
    above = threshold.exceeds(scores).mean()
    assert 0.045 <= above <= 0.05


def test_quantile_refuses_a_rate_below_one_over_n() -> None:
    with pytest.raises(CalibrationError, match=r"below 1/n = 0\.01 for 100 calibration scores"):
        quantile_threshold(np.arange(100.0), 0.005)
    # At exactly 1/n the largest score is the only one above.
    assert quantile_threshold(np.arange(100.0), 0.01).value == 98.0


@pytest.mark.parametrize("target", [1e-3, 1e-4])
def test_pot_meets_a_low_target_rate_on_fresh_data(target: float) -> None:
    rng = np.random.default_rng(1)
    calibration = rng.gamma(shape=2.0, size=20_000)  # a light (exponential-type) tail
    threshold = pot_threshold(calibration, target)
    assert threshold.method == "pot"
    assert threshold.pot is not None
    assert threshold.pot.n_peaks == 400
    fresh = rng.gamma(shape=2.0, size=5_000_000)
    realised = threshold.exceeds(fresh).mean()
    assert target / 2 <= realised <= target * 2
    # The empirical quantile could not have made this threshold: too few scores beyond it.
    assert target * len(calibration) < 25


def test_pot_fits_a_heavy_tail_with_positive_shape() -> None:
    rng = np.random.default_rng(2)
    calibration = rng.pareto(3.0, size=20_000)  # tail index 3: shape 1/3
    threshold = pot_threshold(calibration, 1e-4)
    assert threshold.pot is not None
    assert 0.15 < threshold.pot.shape < 0.5
    realised = threshold.exceeds(rng.pareto(3.0, size=5_000_000)).mean()
    assert 0.5e-4 <= realised <= 2e-4


def test_pot_refuses_too_few_scores_and_rates_outside_its_tail() -> None:
    with pytest.raises(CalibrationError, match="too few calibration scores for the 'pot'"):
        pot_threshold(np.arange(100.0), 0.001)
    with pytest.raises(CalibrationError, match="not in the tail"):
        pot_threshold(np.arange(10_000.0), 0.05)


def test_auto_picks_quantile_with_enough_exceedances_else_pot_else_exp() -> None:
    scores = np.random.default_rng(3).exponential(size=2000)
    assert calibrate(scores, 0.01).method == "quantile"  # 20 expected above
    assert calibrate(scores, 0.001).method == "pot"  # 2 expected above
    assert calibrate(scores[:119], 0.01).method == "exp"  # too few for POT's 30 peaks
    with pytest.raises(CalibrationError, match="at least 20 needed"):
        calibrate(scores[:19], 0.01)


@pytest.mark.parametrize(("n", "target"), [(21, 0.01), (40, 0.01), (100, 0.001)])
def test_exp_holds_its_rate_on_short_histories(n: int, target: float) -> None:
    # Squared errors of Gaussian residuals averaged over a window: a gamma-type tail. Over
    # many short histories, the threshold's realised rate on fresh scores stays near the
    # target (a single draw varies: 21 scores hold little information).
    rng = np.random.default_rng(4)
    fresh = np.sort(rng.gamma(shape=4.0, size=2_000_000))
    realised = []
    for _ in range(300):
        threshold = exp_threshold(rng.gamma(shape=4.0, size=n), target)
        assert threshold.method == "exp"
        assert threshold.pot is not None
        assert threshold.pot.shape == 0.0
        realised.append(1 - np.searchsorted(fresh, threshold.value, "right") / len(fresh))
    assert target / 2.5 <= float(np.median(realised)) <= target * 2.5
    assert float(np.mean(realised)) <= target * 3


def test_exp_refuses_a_rate_outside_its_tail() -> None:
    with pytest.raises(CalibrationError, match="not in the tail the 'exp' method"):
        exp_threshold(np.arange(40.0), 0.3)


@pytest.mark.parametrize(
    ("scores", "rate", "message"),
    [
        ([1.0, 2.0], 0.0, "must be in"),
        ([1.0, 2.0], 1.0, "must be in"),
        ([], 0.1, "no calibration scores"),
        ([1.0, float("nan")], 0.5, "NaN or infinity"),
    ],
)
def test_calibrate_refuses_bad_input(scores: list[float], rate: float, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        calibrate(scores, rate)


def test_a_score_equal_to_the_threshold_is_not_an_outlier() -> None:
    threshold = quantile_threshold(np.arange(10.0), 0.1)
    at, just_above = threshold.value, np.nextafter(threshold.value, np.inf)
    assert threshold.exceeds(np.array([at, just_above])).tolist() == [False, True]


def test_assets_with_enough_scores_get_their_own_threshold_the_furthest_first() -> None:
    rng = np.random.default_rng(3)
    scores = {
        "quiet": rng.exponential(1.0, 2000),
        "noisy": rng.exponential(4.0, 2000),
        "typical": rng.exponential(1.6, 2000),
        "short": rng.exponential(9.0, 50),
    }
    model = calibrate(np.concatenate(list(scores.values())), 0.01).widened(1.5)
    every, choice = asset_thresholds(scores, model, "auto", min_windows=1000, limit=10)
    assert set(every) == {"quiet", "noisy", "typical"}  # "short" has too few scores
    assert (choice.assets, choice.qualified, choice.own) == (4, 3, 3)
    for asset, threshold in every.items():
        assert threshold.margin == 1.5
        assert threshold.exceeds(scores[asset]).mean() <= 0.01
        assert choice.thresholds[asset]["threshold"] == threshold.value
    assert every["noisy"].value > every["typical"].value > every["quiet"].value
    distance = {a: abs(np.log(t.value / model.value)) for a, t in every.items()}
    nearest = min(distance, key=lambda a: distance[a])
    two, _ = asset_thresholds(scores, model, "auto", min_windows=1000, limit=2)
    assert set(two) == set(every) - {nearest}
    assert asset_thresholds(scores, model, "auto", min_windows=1000, limit=0)[0] == {}


def test_a_fleet_of_one_asset_has_only_the_models_threshold() -> None:
    scores = {"only": np.random.default_rng(4).exponential(1.0, 5000)}
    own, choice = asset_thresholds(scores, calibrate(scores["only"], 0.01), "auto", 1000, 10)
    assert own == {}
    assert (choice.qualified, choice.own) == (1, 0)
