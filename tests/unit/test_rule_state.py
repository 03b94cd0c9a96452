from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomaly.rules import Rules, RuleState, SourceRef, flags

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def run(pattern: str, k: int, m: int) -> list[tuple[int, str, int, int]]:
    """Feed a pattern of '+' (above) and '-' (below); return (index, event, start, records)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, mark in enumerate(pattern):
        ref = SourceRef("in", 0, i)
        rules = Rules(open_after=k, resolve_after=m, end_drop=0)
        change = state.observe(T0 + timedelta(seconds=i), ref, float(i), mark == "+", rules)
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
        rules = Rules(open_after=2, resolve_after=2, end_drop=0)
        change = state.observe(T0 + timedelta(seconds=i), ref, score, score > 2, rules)
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
    marks = flags(scores, above, Rules(open_after=k, resolve_after=m))
    assert "".join("+" if f else "-" for f in marks) == flagged


def run_scores(
    scores: list[float], k: int, m: int, drop: float, threshold: float = 1.0
) -> tuple[list[tuple[int, str, int, int]], RuleState]:
    """Feed scores against a threshold with the drop rule; (index, event, start, records)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, score in enumerate(scores):
        ref = SourceRef("in", 0, i)
        rules = Rules(open_after=k, resolve_after=m, end_drop=drop)
        change = state.observe(T0 + timedelta(seconds=i), ref, score, score > threshold, rules)
        if change is not None:
            kind, episode = change
            out.append((i, kind, episode.start.offset, episode.records))
    return out, state


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
    assert flags(scores, above, Rules(open_after=2, resolve_after=3, end_drop=0)).sum() == 12
    marks = flags(scores, above, Rules(open_after=2, resolve_after=3, end_drop=2.0))
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
    rules = Rules(open_after=3, resolve_after=5, end_drop=0)
    for i, (a, o) in enumerate(zip(above, onset, strict=True)):
        change = state.observe(T0, SourceRef("in", 0, i), 2.0, a == "+", rules, o == "+")
        if change is not None:
            kind, episode = change
            out.append((i, kind, episode.start.offset, episode.records))
    assert out == events
