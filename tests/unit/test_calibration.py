import numpy as np
import pytest

from anomaly.model import CalibrationError, calibrate
from anomaly.model.calibration import (
    PotFit,
    Threshold,
    asset_thresholds,
    exp_threshold,
    pot_threshold,
    quantile_threshold,
    spread_check,
)


def test_quantile_leaves_at_most_the_target_rate_above() -> None:
    scores = np.random.default_rng(0).exponential(size=1000)
    threshold = quantile_threshold(scores, 0.05)
    assert threshold.method == "quantile"
    above = threshold.exceeds(scores).mean()
    assert 0.045 <= above <= 0.05


@pytest.mark.parametrize(
    ("rate", "threshold"),
    [
        # n x rate = 1.5: floor 1 score may lie above, so the threshold is the 2nd largest,
        # 9; 1 of 10 above (0.1 <= 0.15). Rounded up, 2 would (0.2 > 0.15).
        (0.15, 9.0),
        # n x rate = 2.5: 2 above, the 3rd largest, 8; 0.2 <= 0.25
        (0.25, 8.0),
        # n x rate = 3 (whole): 3 above, the 4th largest, 7
        (0.3, 7.0),
    ],
)
def test_quantile_with_a_fractional_n_times_rate_rounds_the_scores_above_down(
    rate: float, threshold: float
) -> None:
    scores = np.random.default_rng(5).permutation(np.arange(1.0, 11.0))  # 1 .. 10, shuffled
    calibrated = quantile_threshold(scores, rate)
    assert calibrated.value == threshold
    assert calibrated.exceeds(scores).mean() <= rate
    assert calibrated.n_samples == 10


def test_quantile_refuses_a_rate_below_one_over_n() -> None:
    with pytest.raises(CalibrationError) as caught:
        quantile_threshold(np.arange(100.0), 0.005)
    assert str(caught.value) == (
        "target false-positive rate 0.005 is below 1/n = 0.01 for 100 calibration scores: a "
        "quantile cannot resolve it. Use more held-out data (at least 1/rate records), a "
        "higher rate, or the 'pot' method."
    )
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


def test_auto_takes_the_quantile_from_exactly_ten_expected_above_and_pot_from_120_scores() -> None:
    scores = np.random.default_rng(3).exponential(size=1000)
    assert calibrate(scores, 0.01).method == "quantile"  # 1000 x 0.01 = 10 expected above
    assert calibrate(scores, 0.0099).method == "pot"  # 9.9
    assert calibrate(scores[:120], 0.01).method == "pot"  # 4 x 30 peaks: enough for POT
    assert calibrate(scores[:119], 0.01).method == "exp"


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
        ([1.0, 2.0], 0.0, "target false-positive rate must be in (0, 1), got 0.0"),
        ([1.0, 2.0], 1.0, "target false-positive rate must be in (0, 1), got 1.0"),
        ([], 0.1, "no calibration scores: the held-out part is empty"),
        ([1.0, float("nan")], 0.5, "calibration scores contain NaN or infinity"),
        ([1.0, float("inf")], 0.5, "calibration scores contain NaN or infinity"),
    ],
)
def test_calibrate_refuses_bad_input(scores: list[float], rate: float, message: str) -> None:
    with pytest.raises(CalibrationError) as caught:
        calibrate(scores, rate)
    assert str(caught.value) == message


def test_scores_of_lower_precision_calibrate_as_their_float64_values() -> None:
    """The worker's buffers are float32: their scores calibrate exactly as the same values in
    float64 (the tail's mean is not taken in float32)."""
    scores = np.random.default_rng(6).exponential(size=40).astype(np.float32)
    assert exp_threshold(scores, 0.05) == exp_threshold(scores.astype(np.float64), 0.05)


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


def test_a_widened_threshold_is_margin_times_higher_and_says_so() -> None:
    threshold = Threshold(value=2.0, method="quantile", target_fpr=0.1, n_samples=10)
    assert threshold.widened(1.0) is threshold
    wider = threshold.widened(2.0)
    assert (wider.value, wider.margin) == (4.0, 2.0)
    assert threshold.widened(1.5).value == 3.0


def ten(second: float, largest: float) -> np.ndarray:
    """Ten scores whose quantile threshold at rate 0.1 (1 of 10 above) is `second`."""
    return np.array([0.001] * 8 + [second, largest])


def test_the_assets_furthest_from_a_small_models_threshold_keep_their_own() -> None:
    """Model threshold 0.01. Own thresholds (quantile, rate 0.1: the 2nd largest of 10):
    a-quiet 0.005 (half: |log 0.5| = 0.69), b-noisy 0.03 (3 times: |log 3| = 1.10). With room
    for one, b-noisy keeps its own, listed as 3 times the model's."""
    model = Threshold(value=0.01, method="quantile", target_fpr=0.1, n_samples=20)
    scores = {"a-quiet": ten(0.005, 0.006), "b-noisy": ten(0.03, 0.04)}
    own, choice = asset_thresholds(scores, model, "quantile", min_windows=10, limit=1)
    assert list(own) == ["b-noisy"]
    assert own["b-noisy"].value == 0.03
    assert choice.thresholds == {
        "b-noisy": {"threshold": 0.03, "windows": 10, "times_model": pytest.approx(3.0)}
    }
    assert (choice.assets, choice.qualified, choice.own, choice.limit) == (2, 2, 1, 1)
    both, _ = asset_thresholds(scores, model, "quantile", min_windows=10, limit=2)
    assert sorted(both) == ["a-quiet", "b-noisy"]  # a fleet of two: each its own


def test_asset_thresholds_use_the_method_asked_for() -> None:
    scores = {a: np.random.default_rng(i).exponential(size=2000) for i, a in enumerate("ab")}
    model = calibrate(np.concatenate(list(scores.values())), 0.01)
    own, _ = asset_thresholds(scores, model, "exp", min_windows=100, limit=2)
    assert {t.method for t in own.values()} == {"exp"}  # auto would take the quantile here


def test_an_asset_with_exactly_min_windows_qualifies_and_none_with_no_scores() -> None:
    """limit 0: nothing is calibrated, so scores too few for any method are no error."""
    model = Threshold(value=1.0, method="quantile", target_fpr=0.1, n_samples=10)
    scores = {"one": np.array([2.0]), "none": np.array([]), "three": np.ones(3)}
    own, choice = asset_thresholds(scores, model, "auto", min_windows=0, limit=0)
    assert (own, choice.qualified) == ({}, 2)  # min_windows 0 counts as 1
    _, choice = asset_thresholds(scores, model, "auto", min_windows=3, limit=0)
    assert choice.qualified == 1


def test_the_spread_check_compares_99th_percentiles_and_names_the_features_beyond() -> None:
    """Fit scores 0, 0.001, .., 0.1 (99th percentile 0.099), held-out ones 101 times as large
    (9.999): a ratio of 101, over the limit of 100. Largest absolute scaled value per
    feature, fit and held-out: 0.5 and 1.5 (3 times), 2 and 2 (once), 1 and 2 (exactly twice:
    not beyond), 0.25 and 1.25 (5 times), 1 and 0.5: beyond twice, furthest first, f3, f0."""
    fit = np.arange(101.0) / 1000
    features = ("f0", "f1", "f2", "f3", "f4")
    fit_scaled = np.array([[0.5, -2.0, 1.0, 0.25, 1.0], [0.1, 0.1, 0.1, 0.1, 0.1]])
    held_scaled = np.array([[1.5, 2.0, -2.0, 1.25, 0.5]])
    check = spread_check(fit, fit * 101, fit_scaled, held_scaled, features)
    assert check.fit_score_p99 == pytest.approx(0.099)
    assert check.holdout_score_p99 == pytest.approx(9.999)
    assert check.ratio == pytest.approx(101.0)
    assert check.beyond == ("f3", "f0")
    assert check.exceeded
    assert check.message() == (
        "the held-out scores lie 101 times beyond the fit part's (99th percentile 9.999 "
        "against 0.099): the threshold is extrapolated from data the model never saw and may "
        "be far too high. Furthest beyond their training range: f3, f0. Train on a longer or "
        "more varied period, or exclude a sensor that only steps (TRAINING_DATA__EXCLUDE)."
    )
    # five features 3, 4, 5, 6 and 7 times beyond: the three furthest are named
    many = spread_check(fit, fit, fit_scaled, fit_scaled * [3.0, 4.0, 5.0, 6.0, 7.0], features)
    assert many.beyond == ("f4", "f3", "f2")
    within = spread_check(fit * 1000, fit * 100_000, fit_scaled, fit_scaled, features)
    assert within.ratio == pytest.approx(100.0)
    assert not within.exceeded  # 100 times is the limit itself
    assert within.beyond == ()
    assert "Furthest beyond their training range: none." in within.message()


def test_the_spread_check_reads_float32_scores_as_their_float64_values() -> None:
    rng = np.random.default_rng(7)
    fit, held = rng.exponential(size=(2, 997)).astype(np.float32)
    scaled = rng.normal(size=(10, 2))
    as32 = spread_check(fit, held, scaled, scaled, ("a", "b"))
    assert as32 == spread_check(fit.astype(float), held.astype(float), scaled, scaled, ("a", "b"))


def test_pot_on_a_uniform_tail_finds_shape_minus_one() -> None:
    """Scores 1..120 in units of 1/128: POT keeps 30 peaks (at least MIN_PEAKS, a quarter of
    120 at most), so the initial level is the 31st largest, 90/128, and the excesses are
    1..30 (/128): a uniform tail, which is the generalised Pareto with shape -1 and scale
    its width. Probability-weighted moments (x sorted, m = 30): a0 = mean = 15.5;
    a1 = sum_j j (30 - j) / 29 / 30 = (30 * 465 - 9455) / 870 = 155 / 30; a0 - 2 a1 =
    155 / 30; k = a0 / (a0 - 2 a1) - 2 = 3 - 2 = 1, shape -1; scale 2 a0 a1 / (a0 - 2 a1)
    = 31 (all /128). At rate 0.1: ratio 0.1 x 120 / 30 = 0.4, threshold 90 + 31 (1 - 0.4)
    = 108.6 (/128): the 12 scores 109..120 above it, 10%."""
    scores = np.arange(1.0, 121.0) / 128
    threshold = pot_threshold(scores, 0.1)
    assert threshold.pot is not None
    assert threshold.pot.initial_level == 90 / 128
    assert threshold.pot.n_peaks == 30
    assert threshold.pot.shape == pytest.approx(-1.0)
    assert threshold.pot.scale == pytest.approx(31 / 128)
    assert threshold.value == pytest.approx(108.6 / 128)
    assert threshold.exceeds(scores).sum() == 12


def test_pot_on_equal_peaks_falls_back_to_an_exponential_tail_of_their_excess() -> None:
    """90 scores 0, 0.25, .., 22.25 and 30 peaks at 22.75: every excess over the initial level
    (22.25) is 0.5, a degenerate tail: shape 0, scale 0.5. An exponential tail leaves
    30 / 120 of the scores beyond the level and 0.1 beyond level + 0.5 ln(30 / 12)."""
    scores = np.concatenate([np.arange(90) * 0.25, np.full(30, 22.75)])
    threshold = pot_threshold(scores, 0.1)
    assert threshold.pot is not None
    assert (threshold.pot.initial_level, threshold.pot.shape, threshold.pot.scale) == (
        22.25, 0.0, 0.5,
    )  # fmt: skip
    assert threshold.value == pytest.approx(22.25 + 0.5 * np.log(2.5))


def test_pot_refuses_a_tail_it_cannot_extrapolate_saying_why() -> None:
    with pytest.raises(CalibrationError) as caught:
        pot_threshold(np.arange(119.0), 0.001)
    assert str(caught.value) == (
        "too few calibration scores for the 'pot' method: 119 given, at least 120 needed to "
        "fit a tail on 30 peaks. Use more held-out data or the 'quantile' method with a rate "
        "of at least 1/n."
    )
    # 10,000 scores: 200 peaks (2%); a rate of 0.02 (200 expected above) is not beyond them
    with pytest.raises(CalibrationError) as caught:
        pot_threshold(np.arange(10_000.0), 0.02)
    assert str(caught.value) == (
        "target false-positive rate 0.02 is not in the tail the 'pot' method fits (200 of "
        "10000 scores, rate 0.02); use the 'quantile' method."
    )
    # scores so large that the fitted scale overflows: no threshold, and a clear error
    with np.errstate(over="ignore"), pytest.raises(CalibrationError) as caught:
        pot_threshold(np.arange(1.0, 121.0) * 1e306, 0.1)
    assert str(caught.value) == "the fitted tail gives a non-finite threshold; use 'quantile'"


def test_exp_on_known_scores() -> None:
    """Scores 1..40 in units of 1/8: the top quarter, 10 peaks, over the 11th largest, 30/8;
    their mean excess (1..10, /8) is 5.5/8: the exponential tail's scale. At rate 0.1 the
    threshold is 30/8 + 5.5/8 ln(10 / (0.1 x 40))."""
    scores = np.arange(1.0, 41.0) / 8
    threshold = exp_threshold(scores, 0.1)
    assert threshold.pot is not None
    assert (threshold.pot.initial_level, threshold.pot.n_peaks) == (30 / 8, 10)
    assert threshold.pot.scale == pytest.approx(5.5 / 8)
    assert threshold.value == pytest.approx(30 / 8 + 5.5 / 8 * np.log(2.5))
    # 20 scores, the fewest it takes: 5 peaks (MIN_EXP_PEAKS)
    assert exp_threshold(np.arange(1.0, 21.0), 0.1).pot == PotFit(
        initial_level=15.0, n_peaks=5, shape=0.0, scale=3.0
    )


def test_exp_refuses_too_few_scores_or_a_rate_outside_its_tail_saying_why() -> None:
    with pytest.raises(CalibrationError) as caught:
        exp_threshold(np.arange(19.0), 0.1)
    assert str(caught.value) == (
        "too few calibration scores: 19 given, at least 20 needed. Use more data, a larger "
        "held-out fraction or a shorter window."
    )
    with pytest.raises(CalibrationError) as caught:
        exp_threshold(np.arange(40.0), 0.25)  # 10 expected above: as many as its 10 peaks
    assert str(caught.value) == (
        "target false-positive rate 0.25 is not in the tail the 'exp' method fits (10 of 40 "
        "scores, rate 0.25); use the 'quantile' method."
    )
