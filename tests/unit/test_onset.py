"""The onset rule's evidence: a step against a sensor's own noise, or a far excess."""

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from anomaly import onset
from anomaly.onset import Histories, history_windows, onsets, steps
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
    assert (
        onsets(Histories(history, seen), score, above, 2.0, np.ones(2), rules).tolist() == expected
    )


def test_a_record_whose_history_is_not_full_counts_as_an_onset() -> None:
    """An asset just met or just taken over: a step may lie before what the worker holds, so
    its records open runs as without the rule until the history is full."""
    values = noisy(100)
    history = history_windows(values, 60)[[10, 58, 59, 80]]
    score = np.full(4, 3.0)  # all above a threshold of 2, no step anywhere
    seen = np.array([11, 59, 60, 81])
    evidence = onsets(Histories(history, seen), score, score > 2.0, 2.0, np.ones(2), Rules())
    assert evidence.tolist() == [
        True, True, False, False
    ]  # fmt: skip


def test_rules_refuse_a_short_mean_as_long_as_the_span() -> None:
    with pytest.raises(ValueError, match="onset_mean must be below onset_span"):
        Rules(onset_span=5, onset_mean=5)


def test_an_onset_shows_at_the_record_a_jump_of_known_size_first_exceeds_onset_step() -> None:
    """Two steady sensors, noise units 0.5 and 2.0; at record 100 the first jumps by 10: 20
    of its noise units. Short mean 5, span 60, onset_step 8. At record 100 + j (j = 0..4) the
    newest short mean holds j + 1 jumped records: it has moved by 10 (j + 1) / 5 = 2 (j + 1),
    4 (j + 1) noise units: 4, 8, 12, ...: the first over 8 is record 102 (8 at 101 is not
    over it). The step stays while the oldest short mean holds fewer than 3 jumped records:
    at record i it covers i - 59 .. i - 55, so i - 154 of them: i <= 156. Records 0 to 58 are
    onsets anyway: their history is not full (seen < 60)."""
    n, jump_at = 200, 100
    values = np.tile([50.0, -3.0], (n, 1))
    values[jump_at:, 0] += 10.0
    unit = np.array([0.5, 2.0])
    score = np.full(n, 3.0)  # above a threshold of 2, never 10 times it
    rules = Rules(onset_step=8.0, onset_span=60, onset_mean=5, onset_bypass=10.0)
    seen = np.arange(1, n + 1)
    evidence = onsets(
        Histories(history_windows(values, 60), seen), score, score > 2.0, 2.0, unit, rules
    )
    expected = [i <= 58 or 102 <= i <= 156 for i in range(n)]
    assert evidence.tolist() == expected


def test_a_float32_history_is_measured_in_float64() -> None:
    """The worker's buffers are float32. A sensor at 10,000,000 that rises by 1 (10 noise units
    of 0.1): the 5-record sums, 50,000,000 and 50,000,005, are exact in float64 but not in
    float32 (spacing 4 there); the step is (5 / 5) / 0.1 = 10."""
    history: npt.NDArray[Any] = np.full((1, 10, 1), 1e7, dtype=np.float32)
    history[0, 5:, 0] += 1.0
    assert steps(history, np.array([0.1]), 5).tolist() == [10.0]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        # a step rule of half a noise unit is on: the flat history has no step
        (Rules(onset_step=0.5, onset_bypass=0.0), [False, False, False]),
        # a bypass of 1: every score above the threshold is an onset
        (Rules(onset_bypass=1.0), [True, True, False]),
        # a score of exactly 10 times the threshold is not over it
        (Rules(onset_bypass=10.0), [True, False, False]),
    ],
)
def test_the_rules_edges_a_small_step_a_bypass_of_one_and_exactly_the_bypass(
    rules: Rules, expected: list[bool]
) -> None:
    """Threshold 2, a flat history (no step); scores 25 (12.5 times), 20 (exactly 10 times),
    2 (not above)."""
    history = np.zeros((3, 60, 2))
    score = np.array([25.0, 20.0, 2.0])
    seen = np.full(3, 100)
    evidence = onsets(Histories(history, seen), score, score > 2.0, 2.0, np.ones(2), rules)
    assert evidence.tolist() == expected


def test_with_the_rule_off_every_record_is_evidence() -> None:
    histories = Histories(np.zeros((3, 60, 1)), np.full(3, 100))
    evidence = onsets(histories, np.ones(3), np.ones(3, dtype=bool), 2.0, np.ones(1),
                      Rules(onset_step=0.0))  # fmt: skip
    assert evidence.dtype == np.bool_
    assert evidence.tolist() == [True] * 3


def test_every_chunk_of_records_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The records are measured CHUNK at a time (3 here): 10 records, each with a step of 20
    noise units in its history, are all onsets."""
    monkeypatch.setattr(onset, "CHUNK", 3)
    history = np.zeros((10, 60, 1))
    history[:, 30:, 0] = 20.0
    score = np.full(10, 3.0)
    evidence = onsets(
        Histories(history, np.full(10, 100)), score, score > 2.0, 2.0, np.ones(1), Rules()
    )
    assert evidence.tolist() == [True] * 10
