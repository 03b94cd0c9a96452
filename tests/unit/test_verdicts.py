"""The span a verdict covers (training/verdicts.py `bound`, `inside`, `described`): where its
episode ended on the alerts topic, not where it stood when the engineer judged it; and how long
the episodes waited for a verdict (`mean_ack_s`, and the figures pushed: training/metrics.py)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest

from training import verdicts as verdicts_module
from training.data import group_rows
from training.metrics import RunFigures, registry
from training.settings import TrainingSettings
from training.topic import Recorded
from training.verdicts import Verdict, bound, described, inside, mean_ack_s, read_verdicts

OPEN = math.inf
# An engineer judged episode E of pump-01 while it was open (the verdict's end: none)
JUDGED_OPEN = {"in/0/5": Verdict("in/0/5", "pump-01", "false_alarm", 100.0, OPEN, ended_by="open")}


def test_an_episode_judged_open_ends_where_its_resolve_on_the_alerts_topic_says() -> None:
    recorded = {"in/0/5": Recorded("pump-01", 100.0, 250.0)}
    (v,) = bound(JUDGED_OPEN, recorded).values()
    assert (v.begin, v.end, v.ended_by) == (100.0, 250.0, "resolve")


def test_an_episode_still_open_covers_the_asset_to_the_ranges_end() -> None:
    recorded = {"in/0/5": Recorded("pump-01", 100.0, OPEN)}
    (v,) = bound(JUDGED_OPEN, recorded).values()
    assert (v.begin, v.end, v.ended_by) == (100.0, OPEN, "open")


def test_a_span_never_reaches_into_the_assets_next_episode() -> None:
    """No resolve was read for E (a worker that lost its state opened the next one): E ends
    just before the next episode's first record. Another asset's episode bounds nothing."""
    recorded = {
        "in/0/5": Recorded("pump-01", 100.0, OPEN),
        "in/1/9": Recorded("pump-02", 150.0, 160.0),
        "in/0/80": Recorded("pump-01", 400.0, 420.0),
        "in/0/95": Recorded("pump-01", 450.0, 460.0),
    }
    (v,) = bound(JUDGED_OPEN, recorded).values()
    assert v.ended_by == "next_episode"
    assert v.end < 400.0
    assert v.end > 399.999
    history = group_rows(
        "t", ("x",), [("pump-01", float(t), [0.0]) for t in range(0, 500, 10)], True
    )
    kept = inside(history, bound(JUDGED_OPEN, recorded), "false_alarm")[0]
    times = history.series[0].ts
    assert times[kept].tolist() == [float(t) for t in range(100, 400, 10)]


def test_an_episode_the_alerts_topic_no_longer_holds_keeps_the_verdicts_span() -> None:
    given = {"in/0/5": Verdict("in/0/5", "pump-01", "confirmed", 100.0, 180.0)}
    (v,) = bound(given, {}).values()
    assert (v.begin, v.end, v.ended_by) == (100.0, 180.0, "as_judged")
    (v,) = bound(JUDGED_OPEN, {}).values()
    assert (v.end, v.ended_by) == (OPEN, "open")
    (v,) = bound(JUDGED_OPEN, {"in/0/80": Recorded("pump-01", 400.0, OPEN)}).values()
    assert v.ended_by == "next_episode"


def test_the_report_lists_each_verdict_with_its_rows_kept_or_dropped() -> None:
    """pump-01 and pump-02 report every 10 s from 0 to 490: 16 records of pump-01 in
    [100, 250], 6 of pump-02 in [150, 200]."""
    rows = [(a, float(t), [0.0]) for t in range(0, 500, 10) for a in ("pump-01", "pump-02")]
    history = group_rows("t", ("x",), rows, True)
    verdicts = bound(
        {**JUDGED_OPEN, "in/1/9": Verdict("in/1/9", "pump-02", "confirmed", 150.0, OPEN)},
        {"in/0/5": Recorded("pump-01", 100.0, 250.0), "in/1/9": Recorded("pump-02", 150, 200)},
    )
    flagged: dict[str, dict[str, int | None]] = {
        "in/0/5": {"candidate_flagged": 0, "service_flagged": 16}
    }
    entries = described(verdicts, history, flagged, dropping=True)
    assert entries == [
        {"episode_id": "in/0/5", "asset_id": "pump-01", "verdict": "false_alarm",
         "started_at": "1970-01-01T00:01:40Z", "ended_at": "1970-01-01T00:04:10Z",
         "ended_by": "resolve", "rows": 16, "kept": 16, "candidate_flagged": 0,
         "service_flagged": 16},
        {"episode_id": "in/1/9", "asset_id": "pump-02", "verdict": "confirmed",
         "started_at": "1970-01-01T00:02:30Z", "ended_at": "1970-01-01T00:03:20Z",
         "ended_by": "resolve", "rows": 6, "dropped": 6, "candidate_flagged": None,
         "service_flagged": None},
    ]  # fmt: skip
    assert described(verdicts, history, {}, dropping=False)[1]["dropped"] == 0
    still_open = described(bound(JUDGED_OPEN, {}), history, {}, dropping=True)
    assert still_open[0]["ended_at"] is None
    assert still_open[0]["rows"] == 40  # 100 to 490
    confirmed = inside(history, verdicts, "confirmed")
    assert not confirmed[0].any()  # pump-01's episode was judged a false alarm
    assert np.array_equal(
        confirmed[1], (history.series[1].ts >= 150) & (history.series[1].ts <= 200)
    )


def test_the_mean_time_to_a_verdict_runs_from_each_episodes_start_on_the_alerts_topic() -> None:
    """Two episodes judged 60 s and 180 s after their first record: 120 s. An episode the
    alerts topic does not hold over the range, and a verdict that does not say when it was
    given, are left out."""
    recorded = {
        "in/0/5": Recorded("pump-01", 100.0, 250.0),
        "in/1/9": Recorded("pump-02", 150.0, OPEN),
        "in/2/3": Recorded("pump-03", 200.0, 260.0),
    }
    given = {
        "in/0/5": Verdict("in/0/5", "pump-01", "false_alarm", 100.0, OPEN, decided=160.0),
        "in/1/9": Verdict("in/1/9", "pump-02", "confirmed", 150.0, OPEN, decided=330.0),
        "in/2/3": Verdict("in/2/3", "pump-03", "confirmed", 200.0, 260.0),  # no decided_at
        "in/0/1": Verdict("in/0/1", "pump-01", "confirmed", 10.0, 20.0, decided=9000.0),
    }
    assert mean_ack_s(given, recorded) == 120.0
    assert mean_ack_s(bound(given, recorded), recorded) == 120.0  # the spans bound, not the start
    assert mean_ack_s({}, recorded) == 0.0
    assert mean_ack_s(given, {}) == 0.0


def test_an_episode_judged_twice_waits_until_its_latest_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read back from the feedback topic as the job reads it: the latest verdict per episode,
    with when it was given (None: the message does not say); the episode counts once."""

    def read(*given: tuple[str, str | None]) -> dict[str, Verdict]:
        messages = [SimpleNamespace(value=json.dumps({
            "episode_id": "in/0/5", "asset_id": "pump-01", "verdict": verdict,
            "started_at": "1970-01-01T00:01:40Z", "ended_at": None, "decided_at": at,
        }).encode()) for verdict, at in given]  # fmt: skip
        monkeypatch.setattr(verdicts_module, "read_planned", lambda *_: messages)
        return read_verdicts(TrainingSettings(), datetime.now(UTC))

    monkeypatch.setattr(verdicts_module, "plan_range", lambda *_: None)
    given = read(("false_alarm", "1970-01-01T00:02:40Z"), ("confirmed", "1970-01-01T00:05:00Z"))
    (v,) = given.values()
    assert (v.verdict, v.begin, v.decided) == ("confirmed", 100.0, 300.0)
    assert mean_ack_s(given, {"in/0/5": Recorded("pump-01", 100.0, OPEN)}) == 200.0
    (v,) = read(("confirmed", None)).values()
    assert v.decided is None


def test_the_episodes_and_the_mean_time_to_a_verdict_are_pushed_even_for_a_failed_run() -> None:
    pushed = registry(RunFigures(episodes=7, ack_s=120.0, verdicts={"confirmed": 2}))
    assert pushed.get_sample_value("anomaly_training_episodes") == 7
    assert pushed.get_sample_value("anomaly_training_ack_seconds") == 120.0
    assert pushed.get_sample_value("anomaly_training_verdicts", {"verdict": "confirmed"}) == 2
    empty = registry(RunFigures())
    assert empty.get_sample_value("anomaly_training_episodes") == 0
    assert empty.get_sample_value("anomaly_training_ack_seconds") == 0
