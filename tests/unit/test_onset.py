"""The onset rule's evidence: a step against a sensor's own noise, or a far excess."""

import numpy as np
import pytest

from anomaly.onset import history_windows, onsets, steps
from anomaly.rules import Rules


def noisy(n: int, seed: int = 0) -> np.ndarray:
    """Two sensors of white noise (standard deviation 1) around 50 and -3."""
    levels = np.array([50.0, -3.0])
    return np.asarray(np.random.default_rng(seed).normal(size=(n, 2)) + levels)


def test_a_jump_shows_as_a_step_of_its_size_in_noise_units() -> None:
    values = noisy(200)
    values[120:, 1] += 20.0  # a jump of 20 noise units on the second sensor
    step = steps(history_windows(values, 60), np.ones(2), 5)
    assert step[:110].max() < 8  # noise alone: short means move by a few units at most
    assert 17 < step[130] < 23
    assert step[125:175].min() > 8  # seen while the span holds means from before it
    assert step[185] < 8  # gone once the span holds only means after it


def test_a_ramp_is_a_step_once_it_has_risen_by_that_much_within_the_span() -> None:
    values = noisy(400)
    values[100:, 0] += np.arange(300) * 0.05  # 3 noise units per span of 60: a slow drift
    slow = steps(history_windows(values, 60), np.ones(2), 5)
    assert slow[160:].max() < 8
    values[100:, 0] += np.arange(300) * 0.25  # 18 units per span: fast
    assert steps(history_windows(values, 60), np.ones(2), 5)[160:].min() > 8


def test_the_unit_is_per_feature() -> None:
    values = noisy(200)
    values[120:, 0] += 20.0
    assert steps(history_windows(values, 60), np.array([10.0, 1.0]), 5)[130] < 8


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (Rules(onset_step=8.0, onset_bypass=10.0), [False, False, True, True, False]),
        (Rules(onset_step=8.0, onset_bypass=0.0), [False, False, True, False, False]),
        (Rules(onset_step=0.0), [True] * 5),  # off: every record is evidence
    ],
)
def test_onsets_are_steps_or_far_excesses_above_the_threshold(
    rules: Rules, expected: list[bool]
) -> None:
    """Threshold 2. Records: above, no step; below, a step (never measured: a record below the
    threshold cannot start a run); above with a step; 12.5 times the threshold, no step;
    above, no step."""
    values = noisy(300)
    values[150:, 0] += 30.0
    rows = [100, 152, 153, 250, 290]
    history = history_windows(values, 60)[rows]
    score = np.array([3.0, 1.0, 3.0, 25.0, 3.0])
    seen = np.array(rows) + 1
    above = score > 2.0
    assert onsets(history, seen, score, above, 2.0, np.ones(2), rules).tolist() == expected


def test_a_record_whose_history_is_not_full_counts_as_an_onset() -> None:
    """An asset just met or just taken over: a step may lie before what the worker holds, so
    its records open runs as without the rule until the history is full."""
    values = noisy(100)
    history = history_windows(values, 60)[[10, 58, 59, 80]]
    score = np.full(4, 3.0)  # all above a threshold of 2, no step anywhere
    seen = np.array([11, 59, 60, 81])
    assert onsets(history, seen, score, score > 2.0, 2.0, np.ones(2), Rules()).tolist() == [
        True, True, False, False
    ]  # fmt: skip


def test_rules_refuse_a_short_mean_as_long_as_the_span() -> None:
    with pytest.raises(ValueError, match="onset_mean must be below onset_span"):
        Rules(onset_span=5, onset_mean=5)
