import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomaly.replay import changes, flags, judged_scores
from anomaly.rules import Mark, Rules, RuleState, SourceRef

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def run(pattern: str, k: int, m: int) -> list[tuple[int, str, int, int]]:
    """Feed a pattern of '+' (above) and '-' (below); return (index, event, start, records)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, mark in enumerate(pattern):
        ref = SourceRef("in", 0, i)
        rules = Rules(resolve_after_s=0, open_after=k, resolve_after=m, end_drop=0)
        change = state.observe(Mark(T0 + timedelta(seconds=i), ref, float(i), mark == "+"), rules)
        if change is not None:
            kind, episode = change
            start = int(episode.episode_id.rsplit("/", 1)[1])
            out.append((i, kind, start, episode.records))
    return out


@pytest.mark.parametrize(
    ("pattern", "k", "m", "events"),
    [
        ("--+--+-+--", 2, 2, []),  # single blips never reach k = 2
        ("--+++-----", 3, 2, [(4, "open", 2, 3), (6, "resolve", 2, 3)]),
        ("+-", 1, 1, [(0, "open", 0, 1), (1, "resolve", 0, 1)]),
        # a dip shorter than m keeps the episode open; the records count to the last '+'
        ("++-+--+---", 2, 3, [(1, "open", 0, 2), (9, "resolve", 0, 7)]),
        ("+++---+++---", 3, 3, [(2, "open", 0, 3), (5, "resolve", 0, 3),
                                (8, "open", 6, 3), (11, "resolve", 6, 3)]),
        ("++++", 2, 2, [(1, "open", 0, 2)]),  # still open at the end
    ],
)  # fmt: skip
def test_episodes_open_after_k_above_and_resolve_after_m_below(
    pattern: str, k: int, m: int, events: list[tuple[int, str, int, int]]
) -> None:
    assert run(pattern, k, m) == events


def test_episode_records_its_span_and_peak() -> None:
    state = RuleState()
    scores = [5.0, 9.0, 1.0, 7.0, 0.0, 0.0]
    for i, score in enumerate(scores):
        ref = SourceRef("in", 3, 100 + i)
        rules = Rules(resolve_after_s=0, open_after=2, resolve_after=2, end_drop=0)
        change = state.observe(Mark(T0 + timedelta(seconds=i), ref, score, score > 2), rules)
    assert change is not None
    kind, episode = change
    assert kind == "resolve"
    assert episode.episode_id == "in/3/100"
    assert episode.started_at == T0
    assert episode.ended_at == T0 + timedelta(seconds=3)
    assert episode.records == 4
    assert episode.peak_score == 9.0


@pytest.mark.parametrize(
    ("pattern", "k", "m", "flagged"),
    [
        ("--+++-----", 3, 2, "--+++-----"),
        ("++-+--+---", 2, 3, "+++++++---"),  # a dip shorter than m stays inside
        ("+-+-+-", 2, 1, "------"),
        ("-++++", 2, 2, "-++++"),  # still open at the end
    ],
)
def test_flag_episodes_marks_the_records_inside_episodes(
    pattern: str, k: int, m: int, flagged: str
) -> None:
    above = np.array([c == "+" for c in pattern])
    scores = np.arange(len(pattern), dtype=float)  # rising: the drop rule could never end one
    marks = flags(scores, above, Rules(resolve_after_s=0, open_after=k, resolve_after=m))
    assert "".join("+" if f else "-" for f in marks) == flagged


def feed(
    state: RuleState, scores: list[float], rules: Rules, threshold: float = 1.0, first: int = 0
) -> list[tuple[int, str, int, int]]:
    """Feed scores (record indexes from `first`) against a threshold; the events as (index,
    event, start, records)."""
    out: list[tuple[int, str, int, int]] = []
    for i, score in enumerate(scores, start=first):
        ref = SourceRef("in", 0, i)
        mark = Mark(T0 + timedelta(seconds=i), ref, score, score > threshold)
        change = state.observe(mark, rules)
        if change is not None:
            kind, episode = change
            out.append((i, kind, episode.start.offset, episode.records))
    return out


def run_scores(
    scores: list[float], k: int, m: int, drop: float, threshold: float = 1.0
) -> tuple[list[tuple[int, str, int, int]], RuleState]:
    """Feed scores against a threshold with the drop rule; (index, event, start, records)."""
    state = RuleState()
    rules = Rules(resolve_after_s=0, open_after=k, resolve_after=m, end_drop=drop)
    return feed(state, scores, rules, threshold), state


def test_drop_rule_ends_an_episode_whose_state_has_ended_and_keeps_its_line() -> None:
    # normal, a fault at 10, then a new state at 3: above the model's threshold (1) for good,
    # but under half the episode's level
    scores = [0.5] * 5 + [10.0] * 20 + [3.0] * 30
    without, _ = run_scores(scores, 3, 4, drop=0.0)
    assert without == [(7, "open", 5, 3)]  # one episode to the end
    events, state = run_scores(scores, 3, 4, drop=2.0)
    # resolved by the 4th record at 3.0; it covers the 20 records at 10.0, not the ones at 3.0
    assert events == [(7, "open", 5, 3), (28, "resolve", 5, 20)]
    assert state.floor == pytest.approx(5.0)  # the episode's level / drop: 3.0 stays below it
    assert not state.idle
    # back below the model's threshold for m records: the raised threshold is cleared, and
    # the state at 3.0 alerts again
    events, state = run_scores(scores + [0.5] * 4 + [3.0] * 3, 3, 4, drop=2.0)
    assert events[2:] == [(61, "open", 59, 3)]
    assert state.floor == 0.0


def test_drop_rule_follows_a_slow_change_and_ignores_short_dips() -> None:
    # an episode whose scores fall slowly from 10 to 2 (1% a record): its level follows them
    slow = [0.5] * 5 + [10.0 * 0.99**i for i in range(160)]
    events, _ = run_scores(slow, 3, 4, drop=2.0)
    assert events == [(7, "open", 5, 3)]
    # dips under half the level shorter than m do not end it
    dips = [0.5] * 5 + ([10.0] * 6 + [3.0] * 3) * 10
    events, state = run_scores(dips, 3, 4, drop=2.0)
    assert events == [(7, "open", 5, 3)]
    assert state.floor == 0.0
    assert not state.idle


def test_flags_apply_the_drop_rule() -> None:
    scores = np.array([0.5] * 3 + [10.0] * 6 + [3.0] * 6)
    above = scores > 1.0
    assert (
        flags(
            scores, above, Rules(resolve_after_s=0, open_after=2, resolve_after=3, end_drop=0)
        ).sum()
        == 12
    )
    marks = flags(
        scores, above, Rules(resolve_after_s=0, open_after=2, resolve_after=3, end_drop=2.0)
    )
    assert "".join("+" if f else "-" for f in marks) == "---++++++------"


@pytest.mark.parametrize(
    ("above", "onset", "events"),
    [
        # a long run above the threshold with no onset in it never opens
        ("-++++++++--", "-----------", []),
        # the run starts at its first onset: the records above before it do not count
        ("-++++++++--", "-----+-----", [(7, "open", 5, 3)]),
        ("-++++++++--", "-+---------", [(3, "open", 1, 3)]),
        # an onset before the run does not start it: the evidence is per run
        ("+-+++------", "+----------", []),
        # inside an episode no evidence is needed: a dip and a new run above continue it
        ("-+++-++++------", "-+-------------", [(3, "open", 1, 3), (13, "resolve", 1, 8)]),
    ],
)  # fmt: skip
def test_the_onset_rule_starts_a_run_only_at_an_onset(
    above: str, onset: str, events: list[tuple[int, str, int, int]]
) -> None:
    state, out = RuleState(), []
    rules = Rules(resolve_after_s=0, open_after=3, resolve_after=5, end_drop=0)
    for i, (a, o) in enumerate(zip(above, onset, strict=True)):
        change = state.observe(Mark(T0, SourceRef("in", 0, i), 2.0, a == "+", o == "+"), rules)
        if change is not None:
            kind, episode = change
            out.append((i, kind, episode.start.offset, episode.records))
    assert out == events


def test_the_opening_runs_geometric_mean_sets_the_drop_line_and_the_floor() -> None:
    """Opening run 2, 8, 32 (threshold 1, k 3, m 2, drop 2): its level is the geometric mean
    (2 * 8 * 32) ** (1/3) = 512 ** (1/3) = 8, so the drop line is 8 / 2 = 4."""
    # 4.1 is above the line: the episode goes on (a level over 8 and 32 only, 16, would put
    # the line at 8 and end it here)
    assert run_scores([2.0, 8.0, 32.0] + [4.1] * 3, 3, 2, drop=2.0)[0] == [(2, "open", 0, 3)]
    # 3.9 is under it: the 2nd record at 3.9 (index 4) ends the episode, which keeps its 3
    # records above the line; the floor is the line, 4 (a level over 2 and 8 only, 4, would
    # put the line at 2 and never end it)
    events, state = run_scores([2.0, 8.0, 32.0, 3.9, 3.9], 3, 2, drop=2.0)
    assert events == [(2, "open", 0, 3), (4, "resolve", 0, 3)]
    assert state.floor == pytest.approx(4.0)
    assert (state.episode, state.above_run, state.drop_run) == (None, 0, 0)


@pytest.mark.parametrize("end_drop", [0.0, 1.0])
def test_end_drop_1_is_off_like_0(end_drop: float) -> None:
    """The documented off values: an episode at 8 whose records fall to 2 (a quarter of its
    level, still above the threshold 1) for 30 records stays open until 2 records below the
    threshold end it (index 34; its records: indexes 0 to 32, 33)."""
    scores = [8.0] * 3 + [2.0] * 30 + [0.5] * 2
    events, state = run_scores(scores, 3, 2, drop=end_drop)
    assert events == [(2, "open", 0, 3), (34, "resolve", 0, 33)]
    assert state.floor == 0.0
    assert state.idle


def test_a_record_exactly_on_the_drop_line_is_not_under_it() -> None:
    """Level 8 (an opening run at 8), drop 8: the line is 8 / 8 = 1 exactly (log 8 - log 8 = 0
    = log 1); the threshold is 0.5. Records at 1.0 never end the episode, records at 0.99 do
    (the 2nd of them, m = 2)."""
    events, _ = run_scores([8.0] * 3 + [1.0] * 10, 3, 2, drop=8.0, threshold=0.5)
    assert events == [(2, "open", 0, 3)]
    events, _ = run_scores([8.0] * 3 + [0.99] * 2, 3, 2, drop=8.0, threshold=0.5)
    assert events == [(2, "open", 0, 3), (4, "resolve", 0, 3)]


def test_a_record_below_the_threshold_restarts_the_count_under_the_line() -> None:
    """m 3: under the line (3 < 8 / 2), below the threshold (0.5), under the line twice: no
    three in a row under the line; a third one in a row ends it (index 7)."""
    events, _ = run_scores([8.0] * 3 + [3.0, 0.5, 3.0, 3.0], 3, 3, drop=2.0)
    assert events == [(2, "open", 0, 3)]
    events, _ = run_scores([8.0] * 3 + [3.0, 0.5, 3.0, 3.0, 3.0], 3, 3, drop=2.0)
    assert events == [(2, "open", 0, 3), (7, "resolve", 0, 3)]


def test_the_raised_threshold_holds_until_m_records_in_a_row_below_the_models() -> None:
    """Threshold 1, k 3, m 2, drop 2. An episode at 8 ended by the drop rule leaves a floor of
    8 / 2 = 4; what happens on it, record by record."""
    rules = Rules(resolve_after_s=0, open_after=3, resolve_after=2, end_drop=2.0)
    state = RuleState()
    assert feed(state, [8.0] * 3 + [3.0] * 2, rules) == [(2, "open", 0, 3), (4, "resolve", 0, 3)]
    floor = state.floor
    assert floor == pytest.approx(4.0)
    assert (state.above_run, state.drop_run) == (0, 0)
    # a run over the floor right after: an episode of its own, opened after k records from
    # its first, ended by m records below the model's threshold; the floor stays
    assert feed(state, [50.0] * 3 + [0.5] * 2, rules, first=5) == [
        (7, "open", 5, 3), (9, "resolve", 5, 3),
    ]  # fmt: skip
    assert state.floor == floor
    # the records below the threshold that ended that episode do not clear the floor: one more
    assert feed(state, [0.5], rules, first=10) == []
    assert state.floor == floor
    # a score equal to the floor is not above it: no run; yet it is above the model's
    # threshold, so the count of records below it starts again
    assert feed(state, [floor] * 3 + [0.5], rules, first=11) == []
    assert state.floor == floor
    assert not state.idle
    # the 2nd record in a row below the model's threshold clears the floor: nothing is left
    assert feed(state, [0.5], rules, first=15) == []
    assert (state.floor, state.below_run, state.above_run, state.drop_run) == (0.0, 0, 0, 0)
    assert state.idle
    # the state at 3 alerts again
    assert feed(state, [3.0] * 3, rules, first=16) == [(18, "open", 16, 3)]


def test_offline_changes_date_episodes_by_their_times_and_place_them_by_index() -> None:
    """`changes` names an offline episode by its first record's index (no topic, partition 0)
    and dates it by `times`, or at the epoch without them."""
    scores = np.array([0.5, 2.0, 2.0, 0.5, 0.5])
    rules = Rules(resolve_after_s=0, open_after=2, resolve_after=2, end_drop=0, onset_step=0)
    times = [T0 + timedelta(minutes=i) for i in range(5)]
    dated = [
        (i, kind, e.episode_id, e.start, e.started_at, e.ended_at)
        for i, kind, e in changes(scores, scores > 1.0, rules, times)
    ]
    start = SourceRef("", 0, 1)
    assert dated == [
        (2, "open", "/0/1", start, times[1], times[2]),
        (4, "resolve", "/0/1", start, times[1], times[2]),
    ]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    untimed = [(e.started_at, e.ended_at) for _, _, e in changes(scores, scores > 1.0, rules)]
    assert untimed == [(epoch, epoch)] * 2


def test_offline_changes_refuse_scores_and_decisions_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="zip"):
        list(
            changes(
                np.ones(3),
                np.ones(2, dtype=bool),
                Rules(
                    resolve_after_s=0,
                ),
            )
        )


def test_flags_apply_the_onset_evidence() -> None:
    """Above from index 1 on (k 3): with no onset nothing is flagged; with an onset at index 4
    the run starts there and the episode covers 4 to the end."""
    scores = np.full(8, 2.0)
    above = np.array([False] + [True] * 7)
    rules = Rules(resolve_after_s=0, open_after=3, resolve_after=2, end_drop=0)
    onset = np.zeros(8, dtype=bool)
    marks = flags(scores, above, rules, onset)
    assert marks.dtype == np.bool_
    assert not marks.any()
    onset[4] = True
    assert "".join("+" if f else "-" for f in flags(scores, above, rules, onset)) == "----++++"


def test_rules_without_the_onset_rule_read_no_history() -> None:
    rules = Rules(resolve_after_s=0, onset_step=8.0, onset_span=40)
    assert rules.history == 40
    assert rules.without_onset() == Rules(resolve_after_s=0, onset_step=0.0, onset_span=40)
    assert rules.without_onset().history == 0


def timed(
    pattern: str, rules: Rules, step_s: float, onset: str | None = None
) -> list[tuple[int, str, int, int]]:
    """`run` with records `step_s` seconds apart and any rules; `onset`: per record '+' where
    the onset rule sees a step (None: everywhere)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, mark in enumerate(pattern):
        ts = T0 + timedelta(seconds=i * step_s)
        evidence = onset is None or onset[i] == "+"
        change = state.observe(Mark(ts, SourceRef("in", 0, i), 2.0, mark == "+", evidence), rules)
        if change is not None:
            out.append((i, change[0], change[1].start.offset, change[1].records))
    return out


HOLD = Rules(open_after=3, resolve_after=3, end_drop=0, onset_step=0, resolve_after_s=600)


def test_a_fault_that_dips_under_and_returns_within_the_hold_is_one_episode() -> None:
    # records a minute apart: quiet after 3 below, back above for 3 within 10 minutes
    pattern = "+++---+++" + "-" * 12
    assert timed(pattern, HOLD, 60) == [
        (2, "open", 0, 3),
        (5, "quiet", 0, 3),
        (8, "resume", 0, 9),  # the same episode, now over the gap: 9 records
        (11, "quiet", 0, 9),
        (18, "resolve", 0, 9),  # 10 minutes after its last record above (index 8)
    ]
    # without the hold: two episodes, two pages
    no_hold = HOLD.model_copy(update={"resolve_after_s": 0.0})
    assert timed(pattern, no_hold, 60) == [
        (2, "open", 0, 3), (5, "resolve", 0, 3), (8, "open", 6, 3), (11, "resolve", 6, 3),
    ]  # fmt: skip


def test_a_return_after_the_hold_is_a_new_episode() -> None:
    pattern = "+++" + "-" * 10 + "+++---"
    assert timed(pattern, HOLD, 60) == [
        (2, "open", 0, 3), (5, "quiet", 0, 3), (12, "resolve", 0, 3),
        (15, "open", 13, 3), (18, "quiet", 13, 3),
    ]  # fmt: skip


def test_the_hold_is_time_so_one_second_and_three_minute_records_behave_alike() -> None:
    # 10 minutes: 4 records of 3 minutes (12 min) after the last above, 600 of one second
    slow = timed("+++" + "-" * 8, HOLD, 180)
    assert slow == [(2, "open", 0, 3), (5, "quiet", 0, 3), (6, "resolve", 0, 3)]
    fast = timed("+++" + "-" * 601, HOLD, 1)
    assert fast == [(2, "open", 0, 3), (5, "quiet", 0, 3), (602, "resolve", 0, 3)]
    # 3 records below at 3 minutes (9 minutes after the last above) join, 4 (12) do not
    assert [e[1] for e in timed("+++---+++", HOLD, 180)] == ["open", "quiet", "resume"]
    assert [e[1] for e in timed("+++----+++", HOLD, 180)] == ["open", "quiet", "resolve", "open"]


def test_a_blip_shorter_than_k_neither_resumes_nor_delays_the_resolve() -> None:
    assert timed("+++---++" + "-" * 8, HOLD, 60) == [
        (2, "open", 0, 3), (5, "quiet", 0, 3), (12, "resolve", 0, 3),
    ]  # fmt: skip


def test_a_quiet_episode_resumes_only_where_an_episode_would_open() -> None:
    """The onset rule gates a resume as it gates an opening: a drift back over the threshold
    with no step in it does not hold an episode open."""
    rules = HOLD.model_copy(update={"onset_step": 8.0})
    pattern = "+++---++++" + "-" * 10
    no_step = "+" + "-" * 19
    assert [e[1] for e in timed(pattern, rules, 60, no_step)] == ["open", "quiet", "resolve"]
    step = "+" * 1 + "-" * 6 + "+" + "-" * 12
    assert [e[:2] for e in timed(pattern, rules, 60, step)] == [
        (2, "open"), (5, "quiet"), (9, "resume"), (12, "quiet"), (19, "resolve"),
    ]  # fmt: skip


def test_a_drop_ended_episode_goes_quiet_keeping_its_line_and_resumes_only_above_it() -> None:
    rules = Rules(open_after=3, resolve_after=4, end_drop=2.0, onset_step=0, resolve_after_s=60)
    fault = [0.5] * 5 + [10.0] * 20  # records one second apart; the episode's level is 10
    # a new state at 3.0: above the model's threshold (1) but under the line (10 / 2): quiet
    # at its 4th record, resolved 60 s after the last record at 10 (index 24); a return to
    # 10 after that is a new episode
    events = feed(RuleState(), fault + [3.0] * 60 + [10.0] * 3, rules)
    assert events == [
        (7, "open", 5, 3), (28, "quiet", 5, 20), (84, "resolve", 5, 20), (87, "open", 85, 3),
    ]  # fmt: skip
    # a return to 10 within the hold resumes it; the drop rule ends it again
    events = feed(RuleState(), fault + [3.0] * 10 + [10.0] * 3 + [3.0] * 5, rules)
    assert events == [
        (7, "open", 5, 3), (28, "quiet", 5, 20), (37, "resume", 5, 33), (41, "quiet", 5, 33),
    ]  # fmt: skip


def test_a_resumed_stretch_is_judged_by_its_own_level_as_a_new_episode_would_be() -> None:
    rules = Rules(open_after=3, resolve_after=4, end_drop=2.0, onset_step=0, resolve_after_s=60)
    fault = [0.5] * 5 + [10.0] * 20 + [3.0] * 10  # level 10, quiet at its line 5 (index 28)
    # it resumes at 20: at 8 it is under the resumed stretch's line (10), not the first's (5)
    events = feed(RuleState(), fault + [20.0] * 3 + [8.0] * 5, rules)
    assert events == [
        (7, "open", 5, 3), (28, "quiet", 5, 20), (37, "resume", 5, 33), (41, "quiet", 5, 33),
    ]  # fmt: skip


def test_the_hold_changes_the_pages_never_the_records_flagged() -> None:
    """A resume is judged exactly as an opening would be (onset, k, the raised threshold, its
    own level), and a quiet gap is not flagged: with or without the hold the same records are
    flagged; only the episodes (pages) they fall into differ."""
    rng = np.random.default_rng(7)
    times = [T0 + timedelta(seconds=30 * i) for i in range(400)]
    pages = {0.0: 0, 900.0: 0}
    for _ in range(40):
        scores = np.exp(rng.normal(0.0, 1.2, 400)) * np.repeat(rng.uniform(0.3, 4, 20), 20)
        above = scores > 1.0
        onset = rng.random(400) < 0.3
        marks = {}
        for hold in pages:
            rules = Rules(open_after=2, resolve_after=3, end_drop=2.0, resolve_after_s=hold)
            marks[hold] = flags(scores, above, rules, onset)
            opened = changes(scores, above, rules, times, onset)
            pages[hold] += sum(kind == "open" for _, kind, _ in opened)
        assert np.array_equal(marks[0.0], marks[900.0])
        assert marks[0.0].any()
    assert pages[900.0] < pages[0.0] / 2  # what the hold is for


def test_the_judged_score_is_an_average_of_the_log_scores_from_the_first() -> None:
    e = math.e
    halves = Rules(score_rate=0.5)
    assert judged_scores(np.array([1.0, e**2, e**2, 1.0]), halves) == pytest.approx(
        [1.0, e, e**1.5, e**0.75]  # log: 0, 1, 1.5, 0.75
    )
    raw = np.array([0.3, 7.0, 1e-9, 0.0])
    assert judged_scores(raw, Rules(score_rate=1)).tolist() == raw.tolist()  # exactly
    assert judged_scores(raw, Rules()).tolist() == raw.tolist()  # unset: its own score
    assert judged_scores(raw[:0], Rules()).dtype == np.float64
    unset = RuleState()
    for score in (4.0, 1.0):
        unset.judge(score, Rules())
    assert unset.judged == 0.0  # the average of rate 1 is the last log score
    state = RuleState()
    assert state.judge(4.0, halves) == 4.0  # the first record starts the average
    assert state.judge(1.0, halves) == pytest.approx(2.0)
    assert state.judged == pytest.approx(math.log(2.0))


def test_the_rate_left_to_the_model_is_one_over_its_window() -> None:
    assert Rules().for_window(10).score_rate == 0.1
    assert Rules().for_window(1).score_rate == 1.0
    assert Rules(score_rate=0.3).for_window(10).score_rate == 0.3


def test_judged_a_blip_opens_nothing_and_a_wavering_fault_is_one_episode() -> None:
    rules = Rules(open_after=3, resolve_after=3, end_drop=0, onset_step=0, resolve_after_s=0)
    judged_rules = rules.model_copy(update={"score_rate": 0.1})
    normal = [0.5] * 30  # the threshold is 1
    blip = np.array([*normal, 4.0, 4.0, *normal])  # two records 8 times the normal score
    assert not (judged_scores(blip, judged_rules) > 1.0).any()
    # a fault whose own scores fall under the threshold for 4 records in every 8
    wavering = np.array(normal + [2.0, 2.0, 2.0, 2.0, 0.8, 0.8, 0.8, 0.8] * 10 + normal)

    def opened(scores: np.ndarray, judged: Rules) -> int:
        return sum(kind == "open" for _, kind, _ in changes(scores, scores > 1.0, judged))

    assert opened(wavering, rules) == 10  # each return a new page
    assert opened(judged_scores(wavering, judged_rules), judged_rules) == 1


class Marked:
    """A drift whose excess is the residual's one value (2.0: drifting, 0.0 and 1.0: not); its
    average counts the records it was advanced by."""

    def advance(self, z: np.ndarray | None, residual: np.ndarray) -> tuple[np.ndarray, float]:
        return (np.zeros(1) if z is None else z) + 1.0, float(residual[0])


def residuals(marks: str) -> np.ndarray:
    """'d': drifting (2.0), '=': exactly at the drift's threshold (1.0, not drifting)."""
    return np.array([[{"d": 2.0, "=": 1.0}.get(mark, 0.0)] for mark in marks])


def drifted(
    scores: list[float], drifting: str, rules: Rules
) -> tuple[list[tuple[int, str, int, int]], RuleState]:
    """Scores a second apart against the threshold 1, with the drift's evidence per record
    ('d': drifting); the events as (index, event, start, records)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, (score, residual) in enumerate(zip(scores, residuals(drifting), strict=True)):
        ts = T0 + timedelta(seconds=i)
        change = state.step(
            Mark(ts, SourceRef("in", 0, i), score, score > 1.0), rules, residual, Marked()
        )
        if change is not None:
            out.append((i, change[0], change[1].start.offset, change[1].records))
    return out, state


PLAIN = Rules(open_after=3, resolve_after=3, end_drop=0, onset_step=0, resolve_after_s=0)


def test_the_drift_keeps_an_active_episode_going_while_it_lasts() -> None:
    """A fault at 2 for 3 records, then back under the threshold (0.5) while its residuals
    drift for 6 records: the episode runs on through them, and ends m records after."""
    scores = [2.0] * 3 + [0.5] * 12
    assert drifted(scores, "-" * 15, PLAIN)[0] == [(2, "open", 0, 3), (5, "resolve", 0, 3)]
    events, _ = drifted(scores, "---dddddd------", PLAIN)
    assert events == [(2, "open", 0, 3), (11, "resolve", 0, 9)]
    # exactly at its threshold is not drifting: as without it
    assert drifted(scores, "---======------", PLAIN)[0] == [(2, "open", 0, 3), (5, "resolve", 0, 3)]
    flagged = flags(np.array(scores), np.array(scores) > 1.0, PLAIN,
                    residuals=residuals("---dddddd------"), drift=Marked())  # fmt: skip
    assert "".join("+" if f else "-" for f in flagged) == "+" * 9 + "-" * 6


def test_the_drift_never_starts_a_run_nor_opens_resumes_or_holds_a_quiet_episode() -> None:
    # a normal day whose residuals drift: nothing
    assert drifted([0.5] * 10, "d" * 10, PLAIN)[0] == []
    # two records above, a drifting one under, one above (k 3): no run of 3, no episode
    assert drifted([2.0, 2.0, 0.5, 2.0], "--d-", PLAIN)[0] == []
    # quiet under the hold (10 s), drifting all along: it resolves when it would without
    hold = PLAIN.model_copy(update={"resolve_after_s": 10.0})
    scores = [2.0] * 3 + [0.5] * 20
    plain, _ = drifted(scores, "-" * 23, hold)
    assert plain == [(2, "open", 0, 3), (5, "quiet", 0, 3), (12, "resolve", 0, 3)]
    events, state = drifted(scores, "---" + "-" * 3 + "d" * 17, hold)
    assert events == plain
    assert state.episode is None


def test_the_average_runs_only_while_the_rules_follow_the_asset() -> None:
    """Records under the threshold of an idle asset leave it alone; a record above starts it;
    every record until the asset is idle again advances it; then it is dropped."""
    state = RuleState()
    rules = PLAIN.model_copy(update={"end_drop": 2.0})

    def feed(scores: list[float], first: int) -> None:
        for i, score in enumerate(scores, start=first):
            ts = T0 + timedelta(seconds=i)
            state.step(Mark(ts, SourceRef("in", 0, i), score, score > 1.0), rules, np.zeros(1),
                       Marked())  # fmt: skip

    feed([0.5] * 5, 0)
    assert state.drift is None
    feed([2.0, 0.5], 5)  # a run of one, ended: idle again
    assert state.drift is None
    feed([4.0] * 3 + [0.5, 0.5], 7)  # an episode, two records under
    assert state.drift is not None
    assert state.drift.tolist() == [5.0]
    feed([0.5], 12)  # the third under: it resolves, the asset is idle
    assert state.idle
    assert state.drift is None
    feed([4.0] * 3 + [1.5] * 3, 13)  # an episode the drop rule ends: its raised threshold
    assert not state.idle  # still followed: the average goes on
    assert state.drift is not None
    assert state.drift.tolist() == [6.0]
    feed([0.5] * 3, 19)  # back under the model's threshold for m: the raised one clears
    assert state.idle
    assert state.drift is None


def test_the_drop_rule_still_ends_an_episode_that_the_drift_holds() -> None:
    """A fault at 10, then a state at 0.8 (under the threshold, far under half the episode's
    level) whose residuals drift: the drop rule ends the episode after m of them, covering
    the fault only; without the drop rule the drift holds it as long as it lasts."""
    scores = [0.5] * 5 + [10.0] * 20 + [0.8] * 10
    marks = "-" * 25 + "d" * 10
    rules = Rules(open_after=3, resolve_after=4, end_drop=2.0, onset_step=0, resolve_after_s=0)
    events, _ = drifted(scores, marks, rules)  # the level follows the scores, not the drift
    assert events == [(7, "open", 5, 3), (28, "resolve", 5, 20)]
    no_drop = rules.model_copy(update={"end_drop": 0.0})
    events, state = drifted(scores, marks, no_drop)
    assert events == [(7, "open", 5, 3)]
    assert state.episode is not None
    assert state.episode.records == 30  # to the last drifting record


def test_the_drift_never_changes_where_the_first_episode_opens() -> None:
    """On random scores and random drift: the first page comes at the same record, for the
    same run, with and without the drift's evidence."""
    rng = np.random.default_rng(4)
    rules = Rules(open_after=3, resolve_after=2, end_drop=2.0, onset_step=0, resolve_after_s=5)
    for _ in range(200):
        scores = rng.lognormal(0.0, 1.0, 80)
        marks = "".join("d" if d else "-" for d in rng.random(80) < 0.5)
        first = next(((i, e.start) for i, k, e in changes(scores, scores > 1.0, rules)
                      if k == "open"), None)  # fmt: skip
        with_drift = next(((i, e.start) for i, k, e in changes(
            scores, scores > 1.0, rules, None, None, residuals(marks), Marked()) if k == "open"),
            None)  # fmt: skip
        assert with_drift == first
