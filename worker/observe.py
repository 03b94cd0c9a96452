"""A batch's figures into the worker's metrics (worker/metrics.py), once it is processed."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from worker.metrics import Metrics
from worker.pipeline import BatchStats


def observe_batch(
    m: Metrics,
    stats: BatchStats,
    n: int,
    stages: Mapping[str, float],
    lag: Mapping[tuple[str, int], int],
    assets: int,
) -> None:
    """Count one batch of `n` records: its outcomes, events and scores, the seconds each
    stage took, each partition's lag and the assets tracked."""
    m.records.labels("scored").inc(stats.scored)
    m.records.labels("warming_up").inc(stats.warming_up)
    m.records.labels("incomplete").inc(stats.incomplete)
    m.records.labels("stopped").inc(stats.stopped)
    m.records.labels("starting").inc(stats.starting)
    for feature, count in stats.filled.items():
        m.values_filled.labels(feature).inc(count)
    m.records.labels("dead_lettered").inc(sum(stats.dead_letters.values()))
    for reason, count in stats.dead_letters.items():
        m.dead_letters.labels(reason).inc(count)
    for kind, count in stats.events.items():
        m.alert_events.labels(kind).inc(count)
    for episode in stats.episodes:
        m.episode(*episode)
    for fault in stats.faults:
        m.sensor_fault(*fault)
    m.alarms.show(stats.alarms)
    for model, count in stats.scored_by_model.items():
        m.scored.labels(model).inc(count)
    for model, count in stats.outliers_by_model.items():
        m.outliers.labels(model).inc(count)
    for model, count in stats.above_median_by_model.items():
        m.above_median.labels(model).inc(count)
    for stage, seconds in stages.items():
        m.stage_seconds.labels(stage).observe(seconds)
    m.batch_records.observe(n)
    now = time.time()
    m.decision_lag.observe_many(now - np.asarray(stats.record_times))
    m.score.observe_many(stats.scores)
    m.assets_tracked.set(assets)
    m.assets_evicted.inc(stats.evicted)
    for (topic, partition), records in lag.items():
        m.consumer_lag.labels(topic, str(partition)).set(records)
    m.last_batch.set(now)
