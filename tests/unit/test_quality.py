"""Episodes back to per-row decisions, and F1 / FAR / MAR, on small hand-made cases."""

from typing import Any

import numpy as np
import pytest

from benchmarks.quality import (
    Confusion,
    EpisodeSpan,
    episode_rows,
    episodes_from_events,
    row_flags,
)
from benchmarks.skab import blind_edges

T0 = 1_600_000_000.0  # rows one second apart from here
ROWS = T0 + np.arange(12, dtype=np.float64)


def iso(second: int) -> str:
    return f"2020-09-13T12:26:{40 + second:02d}Z"  # T0 + second


def open_event(first: int, trigger: int, asset: str = "a", episode: str = "") -> dict[str, Any]:
    return {"type": "open", "episode_id": episode or f"t/0/{first}", "asset_id": asset,
            "ts": iso(trigger), "started_at": iso(first)}  # fmt: skip


def resolve_event(first: int, last: int, asset: str = "a") -> dict[str, Any]:
    return {"type": "resolve", "episode_id": f"t/0/{first}", "asset_id": asset,
            "ts": iso(last + 3), "started_at": iso(first), "ended_at": iso(last)}  # fmt: skip


def flags(events: list[dict[str, Any]], asset: str = "a") -> list[int]:
    return [int(flag) for flag in row_flags(episodes_from_events(events), asset, ROWS)]


def test_iso_helper_matches_the_row_times() -> None:
    assert episodes_from_events([open_event(0, 0)])[0].start == T0


def test_an_episode_flags_its_rows_from_the_first_above_to_the_last_above() -> None:
    # Opened by the 3rd record above (row 4) of a run that began at row 2; the last record
    # above was row 6; the resolve came after m records below (rows 7-9), which stay unflagged.
    events = [open_event(2, 4), resolve_event(2, 6)]
    assert flags(events) == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_an_episode_still_open_at_the_end_covers_every_later_row() -> None:
    assert flags([open_event(8, 10)]) == [0] * 8 + [1] * 4


def test_several_episodes_and_other_assets() -> None:
    events = [
        open_event(0, 1), resolve_event(0, 1),
        open_event(3, 5, asset="b", episode="t/1/3"),
        open_event(9, 11), resolve_event(9, 10),
    ]  # fmt: skip
    assert flags(events) == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert flags(events, asset="b") == [0, 0, 0] + [1] * 9
    assert flags(events, asset="c") == [0] * 12


def test_a_sensors_silence_on_the_alerts_topic_is_not_an_episode() -> None:
    silent = {"type": "sensor_silent", "asset_id": "a", "feature": "flow", "ts": iso(2)}
    back = {"type": "sensor_resolve", "asset_id": "a", "feature": "flow", "ts": iso(5)}
    assert flags([silent, open_event(8, 10), back]) == [0] * 8 + [1] * 4


def test_episode_rows_name_the_first_and_last_row_of_each_episode() -> None:
    events = [open_event(0, 1), resolve_event(0, 1), open_event(9, 11)]
    events.append(open_event(3, 5, asset="b", episode="t/1/3"))
    episodes = episodes_from_events(events)
    assert episode_rows(episodes, "a", ROWS) == [("t/0/0", 0, 1), ("t/0/9", 9, 11)]
    assert episode_rows(episodes, "a", ROWS[2:9]) == []  # neither covers rows 2-8


def test_replayed_events_and_a_resolve_before_its_open_count_once() -> None:
    events = [resolve_event(2, 3), open_event(2, 3), open_event(2, 3), resolve_event(2, 3)]
    episodes = episodes_from_events(events)
    assert episodes == [EpisodeSpan("t/0/2", "a", T0 + 2, T0 + 3)]
    assert flags(events) == [0, 0, 1, 1] + [0] * 8


def test_a_resolve_without_its_open_still_gives_the_episode() -> None:
    assert flags([resolve_event(1, 2)]) == [0, 1, 1] + [0] * 9


def test_naive_times_are_utc() -> None:
    event = open_event(0, 0) | {"started_at": "2020-09-13T12:26:45"}
    assert episodes_from_events([event])[0].start == T0 + 5


def test_confusion_counts_and_rates() -> None:
    flagged = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    truth = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    c = Confusion.of(flagged, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 2, 4)
    assert c.f1 == pytest.approx(2 / (2 + 4 / 2))  # 0.5
    assert c.far == pytest.approx(2 / 6)
    assert c.mar == pytest.approx(2 / 4)
    assert c.figures() == {"tp": 2, "fp": 2, "fn": 2, "tn": 4,
                           "f1": 0.5, "far": 0.3333, "mar": 0.5}  # fmt: skip


def test_pooling_adds_counts_rather_than_averaging_rates() -> None:
    small = Confusion.of(np.array([True]), np.array([True]))  # F1 1.0 on one row
    large = Confusion.of(np.zeros(9, dtype=bool), np.array([True] * 3 + [False] * 6))
    pooled = small + large
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == (1, 0, 3, 6)
    assert pooled.f1 == pytest.approx(1 / (1 + 3 / 2))
    assert pooled.mar == pytest.approx(0.75)
    assert pooled.rows == 10


def test_the_published_always_alarm_baseline() -> None:
    # The SKAB README: with 54% anomalous rows, always alarming gets F1 0.71, FAR 100%.
    truth = np.array([True] * 54 + [False] * 46)
    c = Confusion.of(np.ones(100, dtype=bool), truth)
    assert round(c.f1, 2) == 0.70  # 54 / (54 + 23); 0.71 on SKAB's exact share
    assert (c.far, c.mar) == (1.0, 0.0)


def test_degenerate_cases_are_defined() -> None:
    nothing = Confusion.of(np.zeros(3, dtype=bool), np.zeros(3, dtype=bool))
    assert (nothing.f1, nothing.far, nothing.mar) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="decisions for"):
        Confusion.of(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_blind_edges_never_flag_the_first_and_last_rows() -> None:
    flags = np.ones(10, dtype=bool)
    assert blind_edges(flags, (2, 3)).tolist() == [False] * 2 + [True] * 5 + [False] * 3
    assert not blind_edges(flags, (6, 6)).any()  # a file shorter than both edges
    assert flags.all()  # the product's own decisions are left as they were
