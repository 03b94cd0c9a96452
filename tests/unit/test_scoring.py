"""The offline scoring step (anomaly/scoring.py) on a detector whose scores are known by hand:
a scaler that leaves values as they are (centre 0, scale 1, noise 1) and a network that
reconstructs every window as zeros, so a window's score is the mean of its squared values."""

from __future__ import annotations

import numpy as np

from anomaly.instruments import SensorProfile, untrusted
from anomaly.model import Detector, Drift, RobustScaler, Threshold
from anomaly.rules import Rules
from anomaly.scoring import SeriesScores, score_series, series_errors, series_flags, series_scores
from tests.support.graphs import zeros


def detector(n_features: int = 1) -> Detector:
    ones = np.ones(n_features)
    return Detector(
        RobustScaler(center=np.zeros(n_features), scale=ones, noise=ones), zeros(n_features)
    )


def threshold(value: float) -> Threshold:
    return Threshold(value=value, method="quantile", target_fpr=0.1, n_samples=10)


def marks(flags: np.ndarray) -> str:
    return "".join("+" if f else "-" for f in flags)


def test_series_scores_one_score_per_full_window() -> None:
    values = np.array([[1.0], [3.0], [0.0], [2.0]])
    # window 2: (1 + 9) / 2 = 5, (9 + 0) / 2 = 4.5, (0 + 4) / 2 = 2
    assert series_scores(detector(), values, 2).tolist() == [5.0, 4.5, 2.0]
    assert series_scores(detector(), values[:2], 2).tolist() == [5.0]  # exactly one window
    assert series_scores(detector(), values[:1], 2).shape == (0,)  # none


def test_a_series_shorter_than_the_window_scores_and_flags_nothing() -> None:
    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    scored = score_series(detector(2), threshold(1.0), values, 3, Rules(score_rate=1))
    assert scored.window == 3
    assert scored.score.shape == (0,)
    assert scored.shares.shape == (0, 2)
    assert scored.above.shape == scored.onset.shape == (0,)
    assert scored.above.dtype == scored.onset.dtype == np.bool_
    assert marks(scored.flags(Rules(score_rate=1), 2)) == "--"


def test_score_series_decides_each_window_against_the_threshold() -> None:
    values = np.array([[1.0], [3.0], [0.0], [2.0]])  # window scores 5, 4.5, 2 (as above)
    scored = score_series(
        detector(), threshold(4.5), values, 2, Rules(onset_step=0.0, score_rate=1)
    )
    assert scored.score.tolist() == [5.0, 4.5, 2.0]
    assert scored.above.tolist() == [True, False, False]  # 4.5 is not above 4.5
    assert scored.onset.tolist() == [True] * 3  # the onset rule is off
    assert scored.shares.tolist() == [[1.0]] * 3  # one feature carries the whole error
    one = score_series(
        detector(), threshold(4.5), values[:2], 2, Rules(onset_step=0.0, score_rate=1)
    )
    assert one.score.tolist() == [5.0]  # exactly one full window


def test_score_series_measures_the_onset_on_the_series_history() -> None:
    """One sensor (noise unit 1) at 0 for 80 records, then at 20: window 1, scores 0 then 400
    against a threshold of 4. The newest 5-record mean after j + 1 jumped records has moved by
    20 (j + 1) / 5 = 4 (j + 1) noise units: over onset_step 8 from record 82 on (8 at record
    81 is not over it), so the run starts there and opens after 3 records (k 3), at 84, and
    covers 82 to the end. Records 0 to 58 have no full history (span 60): onsets anyway,
    below the threshold."""
    values = np.zeros((100, 1))
    values[80:] = 20.0
    rules = Rules(open_after=3, resolve_after=2, end_drop=0, score_rate=1, onset_step=8.0,
                  onset_span=60, onset_mean=5, onset_bypass=0.0)  # fmt: skip
    scored = score_series(detector(), threshold(4.0), values, 1, rules)
    assert np.flatnonzero(scored.above).tolist() == list(range(80, 100))
    assert np.flatnonzero(scored.onset).tolist() == list(range(59)) + list(range(82, 100))
    assert marks(scored.flags(rules, 100)) == "-" * 82 + "+" * 18
    assert marks(series_flags(detector(), threshold(4.0), values, 1, rules)) == "-" * 82 + "+" * 18
    # without the onset rule the run starts at the jump itself
    off = rules.without_onset()
    assert marks(series_flags(detector(), threshold(4.0), values, 1, off)) == "-" * 80 + "+" * 20


def test_flags_of_a_series_place_each_window_at_its_last_row_and_apply_the_onset() -> None:
    """Window 3: entry j belongs to row j + 2. Above throughout, an onset only at entry 1: the
    run starts there (row 3) and opens after 3 records (k 3); the first 2 rows are unscored."""
    scored = SeriesScores(
        window=3,
        score=np.full(6, 2.0),
        shares=np.ones((6, 1)),
        above=np.ones(6, dtype=bool),
        onset=np.array([False, True, False, False, False, False]),
        residual=np.zeros((6, 1)),
        drift=None,
    )
    rules = Rules(open_after=3, resolve_after=2, end_drop=0, score_rate=1)
    assert marks(scored.flags(rules, 8)) == "---+++++"


def test_the_drift_of_a_series_holds_its_active_episode_while_a_sensor_stays_displaced() -> None:
    """A fault steps the sensor to 3 (score 9, over the threshold 4) for 5 records, then it
    settles at 1 (score 1: under the threshold, but 1 below what the zeros network expects,
    record after record). Without a drift the episode ends 2 records after the step; with one
    (every residual -1 averages to |z| >= 1, over its threshold of 0.5) it runs on to the end,
    and a series that only settles at 1, with no fault before, raises none."""
    values = np.array([[0.0]] * 20 + [[3.0]] * 5 + [[1.0]] * 20)
    rules = Rules(open_after=3, resolve_after=2, end_drop=0, onset_step=0, score_rate=1,
                  resolve_after_s=0)  # fmt: skip
    assert marks(series_flags(detector(), threshold(4.0), values, 1, rules)) == (
        "-" * 20 + "+" * 5 + "-" * 20
    )
    drift = Drift(rate=0.5, center=(0.0,), spread=(1.0,), threshold=threshold(0.5))
    drifting = Detector(detector().scaler, zeros(), drift)
    scored = score_series(drifting, threshold(4.0), values, 1, rules)
    assert scored.residual.tolist() == (-values).tolist()  # zeros minus the reading
    assert scored.drift is drift
    assert marks(series_flags(drifting, threshold(4.0), values, 1, rules)) == "-" * 20 + "+" * 25
    settled = np.array([[0.0]] * 20 + [[1.0]] * 25)
    assert not series_flags(drifting, threshold(4.0), settled, 1, rules).any()


def test_a_series_shorter_than_the_window_has_no_score_and_keeps_its_shapes() -> None:
    drift = Drift(rate=0.5, center=(0.0, 0.0), spread=(1.0, 1.0), threshold=threshold(0.5))
    short = np.ones((2, 2))
    with_drift = Detector(detector(2).scaler, zeros(2), drift)
    errors = series_errors(with_drift, short, 3)
    assert (errors.score.shape, errors.shares.shape, errors.residual.shape) == (
        (0,),
        (0, 2),
        (0, 2),
    )
    scored = score_series(with_drift, threshold(1.0), short, 3, Rules())
    assert scored.residual.shape == (0, 2)
    assert scored.drift is drift
    assert not scored.flags(Rules(), 2).any()


def test_a_record_above_its_threshold_with_a_sensor_out_of_order_is_scored_without_it() -> None:
    """Three sensors of unit noise (a zero network: a window's score is the mean of its
    squared values), the second stuck at 4 from record 200 (its error is all the score's
    excess) and at 0 from record 400 (held, but nothing above). With the sensors' profile
    (anomaly/instruments.py), the records above the threshold while the sensor is not
    trusted are judged by the others alone (`Detector.without`); every other record as
    without the profile."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(600, 3))
    profile = SensorProfile.fit([rng.normal(size=(1500, 3))], ("a", "b", "c"))
    values[200:260, 1], values[400:460, 1] = 4.0, 0.0
    d, window, rules = detector(3), 2, Rules(score_rate=1, onset_step=0)
    plain = score_series(d, threshold(3.0), values, window, rules)
    checked = score_series(d, threshold(3.0), values, window, rules, profile)
    distrusted = untrusted(profile, values[window - 1 :])
    redone = distrusted.any(axis=1) & (plain.score > 3.0)
    assert redone[200:260].sum() > 50
    assert not redone[:199].any()
    assert not redone[260:].any()
    assert (distrusted.any(axis=1) & ~redone)[400:460].sum() > 50  # held, not above: as is
    np.testing.assert_array_equal(checked.score[~redone], plain.score[~redone])
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=0).transpose(0, 2, 1)
    alone = d.without(windows[redone], distrusted[redone])
    np.testing.assert_allclose(checked.score[redone], alone, rtol=1e-6)
    assert (checked.score[redone] < 3.0).mean() > 0.9  # the others alone: within the normal
    np.testing.assert_array_equal(checked.above, checked.score > 3.0)
    # and the per-row flags the cleaning and the gate read, with the profile as without it
    flagged = series_flags(d, threshold(3.0), values, window, rules, profile)
    np.testing.assert_array_equal(flagged, checked.flags(rules, len(values)))
    assert (flagged != series_flags(d, threshold(3.0), values, window, rules)).any()
