"""The gate (training/gate.py `decide`, and the verdicts' rule: training/verdicts.py `judge`),
rule by rule, on models whose scores are known by hand.

A network that reconstructs every window as zeros, behind a scaler that changes nothing, scores
a record of value x as x * x (its squared error against zero); one that reconstructs x / 2
scores it x * x / 4. With k = m = 1 and the drop and onset rules off, a record is flagged
exactly when its score is above the threshold. Every expected figure below follows from those
two facts and the rule the docs state (docs/training.md, "Splits and the gate").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomaly.model import Detector, RobustScaler, Threshold
from anomaly.rules import Rules
from tests.support.graphs import scaled
from training.budget import WEEK_S, AssetBudget, per_asset_week, span_s
from training.data import DataError, SensorHistory, group_rows
from training.gate import Decision, Scored, decide
from training.judgement import VerdictKind
from training.settings import DataSettings, GateSettings
from training.verdicts import Verdict, judge

EACH_RECORD = Rules(
    open_after=1, resolve_after=1, resolve_after_s=0, end_drop=0, onset_step=0, score_rate=1
)


def model(
    threshold: float,
    reconstructs: float = 0.0,
    *,
    target: float = 0.1,
    margin: float = 1.0,
    window: int = 1,
    features: tuple[str, ...] = ("x",),
    scale: float = 1.0,
    version: str | None = None,
) -> Scored:
    """A model scoring value x as (1 - reconstructs)^2 * x^2 (in units of `scale`); the
    threshold as calibrated is `threshold`, and `margin` times that is in force."""
    n = len(features)
    scaler = RobustScaler(center=np.zeros(n), scale=np.full(n, scale))
    calibrated = Threshold(value=threshold, method="quantile", target_fpr=target, n_samples=100)
    return Scored(
        Detector(scaler, scaled(reconstructs, n)), calibrated.widened(margin), window, features,
        EACH_RECORD, version,
    )  # fmt: skip


def held_out(values: list[float]) -> SensorHistory:
    """One asset's records of one feature, one a second."""
    return group_rows("gate", ("x",), [("a", float(i), [v]) for i, v in enumerate(values)], True)


def slice_with(above: int, n: int = 100, high: float = 2.0, low: float = 0.5) -> SensorHistory:
    """n records, the first `above` of value `high` (score 4 at a zero reconstruction), the
    rest `low` (score 0.25)."""
    return held_out([high] * above + [low] * (n - above))


def gate(
    candidate: Scored,
    service: Scored | None,
    slice_: SensorHistory,
    **settings: object,
) -> Decision:
    return decide(candidate, service, slice_, GateSettings(**settings), DataSettings())


# -- the false-positive rate on the held-out slice -------------------------------------------


@pytest.mark.parametrize("above", [5, 10, 20])
def test_a_rate_within_the_band_promotes(above: int) -> None:
    """Target 0.1, factor 2: [0.05, 0.2], both ends included; 100 records (window 1) expect
    10 false positives, enough to check."""
    decision = gate(model(1.0), None, slice_with(above))
    assert decision.promoted, decision.reasons
    assert decision.reasons == []
    assert decision.figures["candidate_fpr"] == above / 100
    assert decision.figures["gate_records"] == 100
    assert decision.figures["service_version"] is None
    assert "fpr_check" not in decision.figures


@pytest.mark.parametrize(("above", "shown"), [(4, "0.04"), (21, "0.21"), (60, "0.6")])
def test_a_rate_outside_the_band_rejects(above: int, shown: str) -> None:
    decision = gate(model(1.0), None, slice_with(above))
    assert not decision.promoted
    assert decision.reasons == [
        f"false-positive rate {shown} on 100 held-out clean records is outside [0.05, 0.2] "
        "(target 0.1, factor 2)"
    ]


def test_the_band_is_the_factor_either_side_of_the_target() -> None:
    """Factor 4: [0.025, 0.4]; 40 of 100 passes, 41 does not."""
    assert gate(model(1.0), None, slice_with(40), fpr_factor=4).promoted
    assert not gate(model(1.0), None, slice_with(41), fpr_factor=4).promoted
    assert gate(model(1.0), None, slice_with(3), fpr_factor=4).promoted
    assert not gate(model(1.0), None, slice_with(2), fpr_factor=4).promoted


def test_the_rate_is_the_calibrated_thresholds_not_the_margins() -> None:
    """Calibrated at 1, in force at 3 (margin 3): scores of 4 exceed both, scores of 2.25
    (value 1.5) only the calibrated one. 10 of each: 0.2 before the margin, 0.1 after."""
    slice_ = held_out([2.0] * 10 + [1.5] * 10 + [0.5] * 80)
    decision = gate(model(1.0, margin=3.0), None, slice_)
    assert decision.figures["candidate_fpr"] == 0.2
    assert decision.figures["candidate_fpr_with_margin"] == 0.1
    assert decision.promoted
    # 30 above the calibrated threshold: 0.3 is out of the band, though 0.1 is in force
    slice_ = held_out([2.0] * 10 + [1.5] * 20 + [0.5] * 70)
    decision = gate(model(1.0, margin=3.0), None, slice_)
    assert not decision.promoted
    assert decision.reasons[0].startswith("false-positive rate 0.3 on 100 ")


def test_each_asset_is_held_to_its_own_threshold() -> None:
    """Asset b's own threshold is 5: its records of value 2 (score 4) are no false
    positives; at the model's threshold of 1 they would be 50 of 100."""
    rows = [("a", float(i), [2.0 if i < 10 else 0.5]) for i in range(50)]
    rows += [("b", float(i), [2.0]) for i in range(50)]
    slice_ = group_rows("gate", ("x",), rows, True)
    own = Threshold(value=5.0, method="quantile", target_fpr=0.1, n_samples=100)
    candidate = model(1.0)
    candidate = Scored(candidate.detector, candidate.threshold, 1, ("x",), EACH_RECORD,
                       asset_thresholds={"b": own})  # fmt: skip
    decision = gate(candidate, None, slice_)
    assert decision.figures["candidate_fpr"] == 0.1
    assert decision.promoted


def test_too_few_records_to_tell_skip_the_rate_check() -> None:
    """99 records at target 0.1 expect 9.9 false positives: not checked, and said so. With
    windows of 2, 199 records give 198 scores, as independent as 99."""
    decision = gate(model(1.0), None, slice_with(99, n=99))
    assert decision.promoted
    assert decision.figures["candidate_fpr"] == 1.0
    assert decision.figures["fpr_check"] == (
        "skipped: 99 records (windows of 1) expect fewer than 10 independent false positives"
    )
    decision = gate(model(1.0, window=2), None, slice_with(199, n=199))
    assert decision.promoted
    assert decision.figures["gate_records"] == 198
    assert str(decision.figures["fpr_check"]).startswith("skipped: 198 records (windows of 2)")
    assert not gate(model(1.0, window=2), None, slice_with(201, n=201)).promoted


def test_no_held_out_records_promote_unchecked() -> None:
    """A slice shorter than one window has nothing to score."""
    decision = gate(model(1.0, window=5), model(1.0, window=5), held_out([9.0] * 4))
    assert decision.promoted
    assert decision.figures["gate_records"] == 0
    assert decision.reasons == ["no held-out records for the gate: promoted unchecked"]


# -- the reconstruction error against the model in service ------------------------------------

# 10 records of 2 and 90 of 0.5: mean x^2 = (10 * 4 + 90 * 0.25) / 100 = 0.625 at a zero
# reconstruction; a half reconstruction leaves a quarter of it, 0.15625.
ZERO_ERROR, HALF_ERROR = 0.625, 0.15625


def test_a_candidate_that_reconstructs_worse_than_the_service_model_is_rejected() -> None:
    decision = gate(model(1.0), model(0.5, reconstructs=0.5, version="v1"), slice_with(10))
    assert not decision.promoted
    assert decision.figures["service_version"] == "v1"
    assert decision.figures["candidate_error"] == ZERO_ERROR
    assert decision.figures["service_error"] == HALF_ERROR
    assert decision.reasons == [
        "held-out error 0.625 is worse than the service model's 0.1562 by more than 10%"
    ]


def test_a_candidate_that_reconstructs_better_or_within_the_margin_is_promoted() -> None:
    # the candidate reconstructs half: scores x^2 / 4, so 1 for the records of 2 (above 0.5)
    better = gate(model(0.5, reconstructs=0.5), model(1.0), slice_with(10))
    assert better.promoted, better.reasons
    assert better.figures["candidate_error"] == HALF_ERROR
    assert better.figures["service_error"] == ZERO_ERROR
    equal = gate(model(1.0), model(1.0), slice_with(10), error_margin=0.0)
    assert equal.promoted, equal.reasons
    # 0.625 against 0.15625: within a margin of 300% (0.625 = 4 x), beyond one of 299%
    assert gate(model(1.0), model(0.5, reconstructs=0.5), slice_with(10), error_margin=3.0).promoted
    assert not gate(
        model(1.0), model(0.5, reconstructs=0.5), slice_with(10), error_margin=2.99
    ).promoted


def test_both_errors_are_measured_in_the_candidates_units() -> None:
    """The service model's scaler divides by 2: its zero reconstruction is zero in raw units
    too, so its error in the candidate's units is the candidate's own (in its own, a quarter:
    the candidate would be rejected)."""
    decision = gate(model(1.0), model(1.0, scale=2.0), slice_with(10), error_margin=0.0)
    assert decision.figures["service_error"] == ZERO_ERROR
    assert decision.promoted, decision.reasons


def test_errors_of_another_shape_or_other_features_are_not_compared() -> None:
    other_window = gate(model(1.0), model(0.5, reconstructs=0.5, window=2), slice_with(10))
    assert other_window.promoted
    assert "service_error" not in other_window.figures
    assert other_window.figures["error_check"] == (
        "skipped: the service model is a dense model of window 2, the candidate a dense model "
        "of window 1; their errors do not compare"
    )
    other_features = gate(model(1.0), model(0.5, reconstructs=0.5, features=("y",)), slice_with(10))
    assert other_features.promoted
    assert other_features.figures["error_check"] == "skipped: the service model has other features"


def test_every_failed_rule_is_listed() -> None:
    decision = gate(model(1.0), model(0.5, reconstructs=0.5), slice_with(60))
    assert not decision.promoted
    assert len(decision.reasons) == 2
    assert decision.reasons[0].startswith("false-positive rate 0.6 ")
    assert decision.reasons[1].startswith("held-out error ")


# -- F1 on a labelled validation file (TRAINING_GATE__VALIDATION_PATH, ..._LABEL) -------------


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Values 3, 3, 0.5, 0.5, 1.5, 0.5 (scores 9, 9, 0.25, 0.25, 2.25, 0.25), the first two
    labelled anomalies in the column `truth`. At threshold 1 the flags are 1 1 0 0 1 0: 2 true
    positives, 1 false positive, F1 = 2 / (2 + 1/2) = 0.8; at threshold 4 they match the
    labels: F1 = 1; at 100 none is flagged: F1 = 0."""
    path = tmp_path / "labelled.csv"
    path.write_text("x,truth\n3,1\n3,1\n0.5,0\n0.5,0\n1.5,0\n0.5,0\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("service_threshold", "service_f1", "promoted"),
    [(4.0, 1.0, False), (1.0, 0.8, True), (100.0, 0.0, True)],
)
def test_a_candidate_with_a_lower_f1_on_the_labelled_file_is_rejected(
    labelled: Path, service_threshold: float, service_f1: float, promoted: bool
) -> None:
    decision = gate(
        model(1.0), model(service_threshold), slice_with(10),
        validation_path=labelled, validation_label="truth",
    )  # fmt: skip
    assert decision.figures["candidate_f1"] == pytest.approx(0.8)
    assert decision.figures["service_f1"] == pytest.approx(service_f1)
    assert decision.promoted is promoted
    if not promoted:
        assert decision.reasons == [
            f"F1 0.8000 on {labelled} is lower than the service model's 1.0000"
        ]


def test_without_a_service_model_the_f1_is_reported_not_compared(labelled: Path) -> None:
    decision = gate(model(100.0, target=0.001), None, slice_with(0),
                    validation_path=labelled, validation_label="truth")  # fmt: skip
    assert decision.promoted
    assert decision.figures["candidate_f1"] == 0.0
    assert "service_f1" not in decision.figures


def test_the_label_column_is_the_setting_not_a_feature(labelled: Path) -> None:
    """Under the default label name (`anomaly`) the file has no label column: refused."""
    with pytest.raises(
        DataError, match=r"has no column 'anomaly'; its columns are \['x', 'truth'\]"
    ):
        gate(model(1.0), model(4.0), slice_with(10), validation_path=labelled)


# -- engineers' verdicts (training/verdicts.py `judge`) ---------------------------------------


def one_asset(values: list[float], asset: str = "a") -> SensorHistory:
    return group_rows("gate", ("x",), [(asset, float(i), [v]) for i, v in enumerate(values)], True)


def judged(kind: VerdictKind, begin: float, end: float, asset: str = "a") -> dict[str, Verdict]:
    return {"in/0/7": Verdict("in/0/7", asset, kind, begin, end)}


# 100 records one a second; the episode judged spans seconds 20 to 59 (40 records)
FALSE_ALARM = judged("false_alarm", 20.0, 59.0)


def level(inside: float, first: int = 40, outside: float = 0.5) -> SensorHistory:
    """Value `inside` for the first `first` records of the judged span, `outside` elsewhere."""
    return one_asset([inside if 20 <= i < 20 + first else outside for i in range(100)])


def test_a_candidate_that_stops_flagging_a_false_alarm_passes_with_the_shares_shown() -> None:
    decision = Decision()
    flagged = judge(model(5.0), model(1.0), level(2.0), FALSE_ALARM, decision)
    assert decision.promoted
    assert decision.figures["candidate_false_alarm_rows"] == "0/40"
    assert decision.figures["candidate_false_alarm_share"] == 0.0
    assert decision.figures["service_false_alarm_rows"] == "40/40"
    assert decision.figures["service_false_alarm_share"] == 1.0
    assert flagged == {"in/0/7": {"candidate_flagged": 0, "service_flagged": 40}}


def test_a_candidate_that_flags_a_larger_share_of_a_false_alarm_is_rejected() -> None:
    """The service model flags none of its 40 records; the candidate may flag up to its
    target rate (0.1: 4 records), not 5."""
    for first, promoted in ((4, True), (5, False)):
        decision = Decision()
        judge(model(1.0), model(5.0), level(2.0, first), FALSE_ALARM, decision)
        assert decision.promoted is promoted, (first, decision.reasons)
    assert decision.figures["candidate_false_alarm_rows"] == "5/40"
    assert decision.reasons == [
        "flags 12.5% of the 40 records of episodes judged false alarms (5), more than the "
        "service model's 0.0% and the target false-positive rate 0.1"
    ]


def test_one_flagged_record_of_a_false_alarm_is_a_small_share_not_the_whole_episode() -> None:
    """The service model flags all 40 records, the candidate one: 1/40, not "1 of 1"."""
    decision = Decision()
    judge(model(1.0), model(0.5), level(2.0, 1, outside=0.9), FALSE_ALARM, decision)
    assert decision.figures["candidate_false_alarm_rows"] == "1/40"
    assert decision.figures["candidate_false_alarm_share"] == 0.025
    assert decision.figures["service_false_alarm_rows"] == "40/40"
    assert decision.promoted


def test_a_candidate_that_misses_a_confirmed_episode_the_service_catches_is_rejected() -> None:
    """Records 10 to 15 of value 3 (score 9): a threshold of 10 misses them, 1 catches them."""
    history = one_asset([3.0 if 10 <= i <= 15 else 0.5 for i in range(100)])
    confirmed = judged("confirmed", 10.0, 15.0)
    decision = Decision()
    judge(model(10.0), model(1.0), history, confirmed, decision)
    assert not decision.promoted
    assert decision.figures["candidate_confirmed_caught"] == "0/1"
    assert decision.figures["service_confirmed_caught"] == "1/1"
    assert decision.figures["service_confirmed_share"] == 1.0
    assert decision.reasons == [
        "catches 0 of 1 confirmed episodes, fewer than the service model's 1"
    ]
    caught = Decision()
    judge(model(8.0), model(1.0), history, confirmed, caught)
    assert caught.promoted
    assert caught.figures["candidate_confirmed_caught"] == "1/1"


def test_without_a_comparable_service_model_the_verdicts_are_measured_not_ruled() -> None:
    decision = Decision()
    flagged = judge(model(1.0), None, level(2.0), FALSE_ALARM, decision)
    assert decision.promoted
    assert decision.figures["candidate_false_alarm_rows"] == "40/40"
    assert "service_false_alarm_rows" not in decision.figures
    assert flagged == {"in/0/7": {"candidate_flagged": 40, "service_flagged": None}}
    other = Decision()
    judge(model(1.0), model(5.0, features=("y",)), level(2.0), FALSE_ALARM, other)
    assert other.promoted
    assert "service_false_alarm_rows" not in other.figures


def test_an_episode_whose_records_were_not_read_is_not_counted() -> None:
    decision = Decision()
    judge(model(1.0), model(5.0), level(2.0), judged("false_alarm", 500.0, 600.0), decision)
    assert decision.figures["candidate_false_alarm_rows"] == "0/0"
    assert decision.promoted


# -- the alarm budget: episodes per asset per week on the held-out records -------------------


def test_the_gate_states_each_models_episodes_a_week_and_refuses_one_over_the_budget() -> None:
    """Five episodes of one record each (a record above, one below: EACH_RECORD's rules) in
    100 records a second apart: 5 per 100 s, 30,240 a week; the service model (threshold 5)
    opens none."""
    slice_ = held_out([2.0, 0.5] * 5 + [0.5] * 90)
    at_budget = gate(model(1.0), model(5.0, version="v1"), slice_,
                     max_episodes_per_asset_week=30240)  # fmt: skip
    assert at_budget.promoted, at_budget.reasons
    assert at_budget.figures["candidate_episodes_per_asset_week"] == 30240.0
    assert at_budget.figures["service_episodes_per_asset_week"] == 0.0
    assert at_budget.budgets == {"candidate": {"a": 30240.0}, "service": {"a": 0.0}}
    over = gate(model(1.0), None, slice_, max_episodes_per_asset_week=30239)
    assert over.reasons == [
        "3.02e+04 episodes per asset per week on the held-out records, over the budget of "
        "30239 (TRAINING_GATE__MAX_EPISODES_PER_ASSET_WEEK)"
    ]
    assert not over.promoted
    assert gate(model(1.0), None, slice_).promoted  # no budget: no check


def test_the_fleets_rate_weighs_each_asset_by_the_time_it_covered() -> None:
    found = [AssetBudget("a", 2, 100.0), AssetBudget("b", 0, 300.0), AssetBudget("c", 1, 0.0)]
    assert [b.per_week for b in found] == [2 * WEEK_S / 100, 0.0, 0.0]
    assert per_asset_week(found) == 3 * WEEK_S / 400
    assert per_asset_week([]) == 0.0
    assert span_s(np.array([10.0, 12.0, 14.0, 20.0])) == 12.0  # one median step more
    assert span_s(np.array([5.0])) == 0.0
