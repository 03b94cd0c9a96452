"""The calendar's training side (anomaly/calendar.py): windows and shelves written and read on
their compacted topic (`TRAINING_TOPICS__CALENDAR`), and the records the training job leaves
out because a maintenance window excludes them.

    anomaly-train window set ID --assets PATTERN --start T --end T [--every daily|weekly] ...
    anomaly-train window list | window remove ID
    anomaly-train shelve ASSET --for 8h --by NAME --reason TEXT | unshelve ASSET
"""

from __future__ import annotations

import logging

import numpy as np

from anomaly.calendar import Calendar, CalendarError
from training.data import Masks, SensorHistory
from training.kafka_range import KafkaUnavailableError, plan_range, read_planned, write_one
from training.settings import TrainingSettings

log = logging.getLogger(__name__)

TOPIC_WAIT_S = 5  # how long the calendar topic's partitions are waited for


def write_entry(settings: TrainingSettings, key: bytes, value: bytes | None) -> None:
    """Set (or, `value` None, remove) one entry; KafkaUnavailableError when it cannot."""
    topic = settings.topics.calendar
    write_one(
        settings.kafka, topic, key, value,
        missing=f"the calendar topic {topic!r} (TRAINING_TOPICS__CALENDAR) does not exist "
        "(create it compacted: docs/operations.md, \"Maintenance windows and shelving\")",
        wait_s=TOPIC_WAIT_S,
    )  # fmt: skip


def read_calendar(settings: TrainingSettings, missing_ok: bool = True) -> Calendar:
    """Every entry on the calendar topic, as the workers read it (an entry this version cannot
    read is logged and skipped). A topic that does not exist is an empty calendar where
    `missing_ok`, else KafkaUnavailableError."""
    calendar = Calendar()
    try:
        planned = plan_range(settings.kafka, settings.topics.calendar, 0, None, 10**9)
    except KafkaUnavailableError as exc:
        if not missing_ok:
            raise
        log.info("no maintenance windows read (%s)", exc)
        return calendar
    for record in read_planned(settings.kafka, planned):
        try:
            calendar.apply(record.key, record.value)
        except CalendarError as exc:
            log.warning("calendar entry skipped: %s", exc)
    return calendar


def excluded_rows(history: SensorHistory, calendar: Calendar) -> Masks:
    """The rows a maintenance window keeps out of training (only the series it covers)."""
    marks: Masks = {}
    for i, series in enumerate(history.series):
        windows = calendar.excluding(series.asset_id)
        if not windows:
            continue
        ts = series.ts
        if not len(ts):
            continue
        mask = np.zeros(len(ts), dtype=bool)
        for window in windows:
            for begin, end in window.spans(float(ts.min()), float(ts.max())):
                mask |= (ts >= begin) & (ts < end)
        if mask.any():
            marks[i] = mask
    return marks
