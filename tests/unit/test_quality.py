"""Episodes back to per-row decisions, and F1 / FAR / MAR, on small hand-made cases."""

from typing import Any

import numpy as np
import pytest

from benchmarks.quality import (
    BoolArray,
    Confusion,
    Encounter,
    EpisodeSpan,
    before_anomaly,
    detection_rate,
    duration_s,
    episode_rows,
    episodes_from_events,
    per_day,
    row_flags,
)
from benchmarks.scorecard import (
    FileResult,
    blind_edges,
    event_summary,
    normal_summary,
    side_by_side,
    summary,
    tep_targets,
)

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


def quiet_event(first: int, last: int) -> dict[str, Any]:
    return resolve_event(first, last) | {"type": "quiet"}


def resume_event(first: int, resumed: int) -> dict[str, Any]:
    return {"type": "resume", "episode_id": f"t/0/{first}", "asset_id": "a",
            "ts": iso(resumed + 2), "started_at": iso(first),
            "resumed_at": iso(resumed)}  # fmt: skip


def test_an_episode_that_went_quiet_and_resumed_flags_its_stretches_not_the_gap() -> None:
    """One episode (one page) over rows 1-9: above at 1-3 and 7-9, quiet at 4-6."""
    events = [open_event(1, 3), quiet_event(1, 3), resume_event(1, 7), quiet_event(1, 9)]
    events += [events[2], resolve_event(1, 9)]  # a resume published twice
    assert flags(events) == [0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]
    assert len(episodes_from_events(events)) == 1
    # still quiet when the events end: its rows end at the quiet's ended_at
    assert flags(events[:2]) == [0, 1, 1, 1] + [0] * 8
    # resumed and still above when the events end: open to the last row
    assert flags(events[:3]) == [0, 1, 1, 1, 0, 0, 0] + [1] * 5
    # quiet again after the resume, not resolved: to the second quiet's ended_at
    assert flags(events[:4]) == [0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]


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


# Events as an operator meets them. Twelve rows three minutes apart, the anomaly on rows 5-9.
STEP = 180.0
SLOW = T0 + STEP * np.arange(12, dtype=np.float64)
LABELS = np.array([False] * 5 + [True] * 5 + [False] * 2)


def test_an_episode_touching_the_anomalys_first_row_meets_it_at_once() -> None:
    met = Encounter.of([(3, 5)], LABELS, SLOW)  # began on normal rows 3-4, still on at row 5
    assert met == Encounter(anomalous=True, on_anomaly=1, false_pages=0, delay_rows=0,
                            delay_s=0.0)  # fmt: skip


def test_an_episode_ending_the_row_before_the_anomaly_is_a_false_page_and_a_miss() -> None:
    met = Encounter.of([(2, 4)], LABELS, SLOW)
    assert met == Encounter(True, on_anomaly=0, false_pages=1, delay_rows=None, delay_s=None)


def test_an_episode_open_to_the_end_meets_the_anomaly_from_its_start() -> None:
    events = [open_event(0, 1), resolve_event(0, 1), open_event(8, 10)]  # 8: never resolved
    spans = [(a, b) for _, a, b in episode_rows(episodes_from_events(events), "a", ROWS)]
    assert spans == [(0, 1), (8, 11)]
    met = Encounter.of(spans, LABELS, ROWS)  # rows one second apart
    assert met == Encounter(True, on_anomaly=1, false_pages=1, delay_rows=3, delay_s=3.0)
    assert met.pages == 2


def test_an_episode_quiet_at_the_anomalys_first_row_meets_it_when_it_resumes() -> None:
    # one page over rows 2-8 (LABELS: the anomaly from row 5), quiet at rows 4-6
    flagged = np.zeros(12, dtype=bool)
    flagged[[2, 3, 7, 8]] = True
    met = Encounter.of([(2, 8)], LABELS, SLOW, flagged)
    assert met == Encounter(True, on_anomaly=1, false_pages=0, delay_rows=2, delay_s=2 * STEP)
    # a page whose only rows on the anomaly are quiet ones is on it, but flags none: missed
    flagged[[7, 8]] = False
    assert Encounter.of([(2, 8)], LABELS, SLOW, flagged).delay_rows is None


def test_no_episode_is_a_miss() -> None:
    assert Encounter.of([], LABELS, SLOW) == Encounter(True, 0, 0, None, None)


def test_the_delay_is_to_the_earliest_episode_on_the_anomaly_in_the_rows_own_time() -> None:
    # Listed latest first; the clock skips 10 minutes between rows 6 and 7.
    times = SLOW.copy()
    times[7:] += 600.0
    met = Encounter.of([(9, 11), (7, 7), (10, 10), (0, 1)], LABELS, times)
    assert (met.on_anomaly, met.false_pages) == (2, 2)  # (10, 10) is after it: a false page
    assert (met.delay_rows, met.delay_s) == (2, 2 * STEP + 600.0)
    assert met.figures() == {"episodes_on_anomaly": 2, "false_pages": 2, "delay_rows": 2,
                             "delay_s": 960.0}  # fmt: skip


def test_without_an_anomaly_every_episode_is_a_false_page() -> None:
    met = Encounter.of([(1, 2), (6, 11)], np.zeros(12, dtype=bool), SLOW)
    assert met == Encounter(False, on_anomaly=0, false_pages=2, delay_rows=None, delay_s=None)
    with pytest.raises(ValueError, match="timestamps"):
        Encounter.of([], LABELS, SLOW[1:])


def test_duration_and_episodes_per_day() -> None:
    tep_normal_run = T0 + STEP * np.arange(960, dtype=np.float64)
    assert duration_s(tep_normal_run) == 48 * 3600.0  # each row stands for its 3 minutes
    assert duration_s(SLOW[:1]) == 0.0
    assert per_day(2, 48 * 3600.0) == 1.0
    assert per_day(3, 8 * 3600.0) == 9.0
    assert per_day(1, 0.0) is None


def test_detection_rate_and_rows_flagged_before_the_anomaly() -> None:
    flagged = np.array([0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert detection_rate(flagged, LABELS) == 4 / 5
    assert before_anomaly(flagged, LABELS) == (1, 5)  # rows 0-4; row 10 is after it
    normal = np.zeros(12, dtype=bool)
    assert detection_rate(flagged, normal) is None
    assert before_anomaly(flagged, normal) == (6, 12)  # a normal run: every row


def result_row(name: str, anomalous: int, **given: Any) -> dict[str, Any]:
    """A results-file row with the fields the summaries read; a fault run by default."""
    row: dict[str, Any] = {
        "file": name, "anomalous": anomalous, "episodes_on_anomaly": 1, "false_pages": 0,
        "delay_rows": 2, "delay_s": 360.0, "duration_s": 48 * 3600.0,
        "tp": anomalous, "fp": 0, "fn": 0, "tn": 160, "detection": 1.0,
        "before_fault": {"rows": 160, "flagged": 0, "share": 0.0},
        "pca": {"tp": anomalous, "fp": 16, "fn": 0, "tn": 144, "detection": 1.0,
                "before_fault": {"rows": 160, "flagged": 16, "share": 0.1}},
    }  # fmt: skip
    row.update(given)
    return row


def normal_run(episodes: int, fp: int, pca_fp: int = 96) -> dict[str, Any]:
    return result_row(
        "tep-00", 0, episodes_on_anomaly=0, false_pages=episodes, delay_rows=None,
        delay_s=None, fp=fp, tn=960 - fp, detection=None,
        pca={"tp": 0, "fp": pca_fp, "fn": 0, "tn": 960 - pca_fp, "detection": None,
             "before_fault": {"rows": 960, "flagged": pca_fp, "share": pca_fp / 960}},
    )  # fmt: skip


def test_the_tep_targets_all_met() -> None:
    rows = [normal_run(episodes=1, fp=19), result_row("tep-01", 800),
            result_row("tep-02", 800, detection=0.9, pca=result_row("", 800)["pca"]
                       | {"detection": 0.949})]  # fmt: skip
    targets = tep_targets(rows, set())
    assert targets["met"] == {
        "detection_vs_pca": True, "mean_detection": True, "episodes_per_fault": True,
        "normal_episodes": True, "normal_flagged": True, "before_fault": True,
    }  # fmt: skip
    assert targets["figures"]["mean_detection"] == 0.95
    assert targets["figures"]["normal_flagged"] == round(19 / 960, 4)


def test_the_tep_targets_missed_say_by_how_much_and_leave_undetectable_faults_out() -> None:
    rows = [
        normal_run(episodes=2, fp=20),
        result_row("tep-01", 800, episodes_on_anomaly=2, false_pages=1,
                   before_fault={"rows": 160, "flagged": 4, "share": 0.025}),
        result_row("tep-03", 800, detection=0.1, episodes_on_anomaly=9,  # undetectable
                   before_fault={"rows": 160, "flagged": 2, "share": 0.0125}),
        result_row("tep-08", 800, detection=0.8, pca=result_row("", 800)["pca"]
                   | {"detection": 0.98}),
    ]  # fmt: skip
    targets = tep_targets(rows, {"tep-03", "tep-15"})
    assert targets["met"] == {
        "detection_vs_pca": False, "mean_detection": False, "episodes_per_fault": False,
        "normal_episodes": False, "normal_flagged": False, "before_fault": True,
    }  # fmt: skip
    figures = targets["figures"]
    assert figures["detectable"] == ["tep-01", "tep-08"]
    assert (figures["undetectable"], figures["undetectable_absent"]) == (["tep-03"], ["tep-15"])
    assert figures["below_pca"] == [{"file": "tep-08", "detection": 0.8, "pca": 0.98}]
    assert figures["mean_detection"] == 0.9  # (1.0 + 0.8) / 2: tep-03's 0.1 left out
    assert figures["pca_mean_detection"] == 0.99  # (1.0 + 0.98) / 2
    assert figures["max_episodes"] == {"file": "tep-01", "episodes": 3}  # tep-03's 9 left out
    assert figures["normal_episodes_per_48h"] == 2.0
    assert figures["before_fault_flagged"] == round(6 / 480, 4)  # every fault run's rows


def test_the_tep_targets_without_a_normal_run_leave_its_targets_open() -> None:
    met = tep_targets([result_row("tep-01", 800)], set())["met"]
    assert met["normal_episodes"] is None
    assert met["normal_flagged"] is None
    assert met["mean_detection"] is True


def test_event_summary_pools_the_files() -> None:
    rows = [
        normal_run(episodes=2, fp=57),
        result_row("a", 100, episodes_on_anomaly=3, false_pages=1, delay_rows=4, delay_s=12.0),
        result_row("b", 100, episodes_on_anomaly=0, false_pages=2, delay_rows=None,
                   delay_s=None),
        result_row("c", 100, episodes_on_anomaly=1, delay_rows=10, delay_s=30.0),
    ]  # fmt: skip
    events = event_summary(rows)
    assert {k: v for k, v in events.items() if k != "normal_files"} == {
        "anomalous_files": 3, "episodes_on_anomaly": 4, "median_per_anomalous_file": 1.0,
        "max_per_anomalous_file": 3, "false_pages": 5, "median_delay_rows": 7.0,
        "median_delay_s": 21.0, "missed": ["b"],
    }  # fmt: skip
    assert events["normal_files"] == {
        "files": ["tep-00"], "episodes": 2, "hours": 48.0, "episodes_per_24h": 1.0,
        "flagged": round(57 / 960, 4), "pca_flagged": 0.1,
    }  # fmt: skip
    assert normal_summary([]) is None


def test_side_by_side_pools_rows_and_keeps_normal_runs_out_of_detection() -> None:
    rows = [normal_run(episodes=0, fp=10),
            result_row("a", 800, tp=600, fn=200, detection=0.75,
                       before_fault={"rows": 160, "flagged": 8, "share": 0.05})]  # fmt: skip
    side = side_by_side(rows)
    product, pca = side["product"], side["pca"]
    assert (product["tp"], product["fp"], product["fn"], product["tn"]) == (600, 10, 200, 1110)
    assert product["mean_detection"] == 0.75
    assert product["before_fault"] == {"rows": 160, "flagged": 8, "share": 0.05}
    assert pca["fp"] == 96 + 16
    assert pca["before_fault"] == {"rows": 160, "flagged": 16, "share": 0.1}


def test_the_worst_and_median_files_are_among_those_with_an_anomaly() -> None:
    """TEP's normal run has no F1 or MAR of its own: one flag there is not the worst file."""

    def scored(name: str, flagged: list[int], labels: BoolArray) -> FileResult:
        flags = np.zeros(12, dtype=bool)
        flags[flagged] = True
        result = FileResult(
            name=name, rows=12, window=1, threshold=1.0, method="exp", version="v",
            episodes=1, flags=flags, agrees=None, train_s=0.0, stream_s=0.0, spans=[],
            ts=ROWS, pca_flags=flags, pca_components=1,
        )  # fmt: skip
        result.score(labels)
        return result

    normal = np.zeros(12, dtype=bool)
    results = [scored("normal", [0], normal), scored("fault", [5, 6, 7, 8], LABELS)]
    truths = [normal, LABELS]
    pooled = results[0].confusion + results[1].confusion
    figures = summary(results, truths, pooled, None)
    assert figures["worst_file_f1"] == {"file": "fault", "f1": round(8 / 9, 4)}  # 2*4/(8+0+1)
    assert figures["worst_file_mar"] == {"file": "fault", "mar": 0.2}
    assert figures["median_file_f1"] == round(8 / 9, 4)
