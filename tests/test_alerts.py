from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from worker.alerts import RuleState, SourceRef, flag_episodes

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def run(pattern: str, k: int, m: int) -> list[tuple[int, str, int, int]]:
    """Feed a pattern of '+' (above) and '-' (below); return (index, event, start, records)."""
    state = RuleState()
    out: list[tuple[int, str, int, int]] = []
    for i, mark in enumerate(pattern):
        ref = SourceRef("in", 0, i)
        change = state.observe(T0 + timedelta(seconds=i), ref, float(i), mark == "+", k, m)
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
        change = state.observe(T0 + timedelta(seconds=i), ref, score, score > 2, 2, 2)
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
    assert "".join("+" if f else "-" for f in flag_episodes(above, k, m)) == flagged
