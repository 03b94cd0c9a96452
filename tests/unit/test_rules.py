"""One set of alert rules: the worker's streaming decisions equal the offline entry points
(`anomaly.replay.changes`/`flags`, `anomaly.scoring`) that the training job's cleaning, the
gate and the benchmarks use, on recorded series, with the drop rule on and off."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from anomaly.model import (
    FORMAT_VERSION,
    ArchitectureConfig,
    Artifact,
    Detector,
    Drift,
    Graph,
    Manifest,
    RobustScaler,
    ScalerParams,
    Threshold,
    TrainingSummary,
    ValidationFigures,
    sliding_windows,
)
from anomaly.replay import changes
from anomaly.rules import Rules
from anomaly.scoring import score_series, series_flags
from anomaly.settings import TopicSettings
from devtools import simulator
from tests.support.fakes import as_records
from tests.support.graphs import zeros
from training.autoencoder import build_autoencoder
from training.data import AssetSeries, SensorHistory
from training.gate import Scored, f1
from training.graph import to_graph
from worker.pipeline import BatchProcessor
from worker.settings import AlertSettings, BatchSettings

TOPICS = TopicSettings(input="in", alerts="alerts", dead_letters="dlq")
WINDOW = 4
N = 900


def recorded(seed: int) -> np.ndarray:
    """One pump's readings: a fault that steps vibration up by 20 standard deviations, then
    settles 5 above normal (a new state, not what opened the episode), then normal again."""
    rows = simulator.clean_rows(N, seed=seed)
    std = simulator.sensor_std(rows[:300])[3]
    rows[300:400, 3] += 20 * std
    rows[400:600, 3] += 5 * std
    return rows


@functools.cache
def random_graph(architecture: ArchitectureConfig) -> Graph:
    """The graph of a network with random weights, seeded (exported once)."""
    torch.manual_seed(0)
    return to_graph(build_autoencoder(architecture))


def artifact(
    rows: np.ndarray, rules: Rules, quantile: float, of: slice, drift: bool = False
) -> Artifact:
    """A model with random weights (scores need not be good to be decided alike), its threshold
    at a quantile of the scores of the series' rows `of`; with `drift`, a residual drift
    calibrated on the normal part (fit on its first 200 records, threshold on the next 100)."""
    n = rows.shape[1]
    architecture = ArchitectureConfig(n_features=n, window=WINDOW, hidden=(16,), latent=3)
    graph = random_graph(architecture)
    scaler = RobustScaler.fit(rows[:300])
    detector = Detector(scaler, graph)
    if drift:
        residual = detector.score(sliding_windows(rows[:300], WINDOW)).residual
        calibrated = Drift.fit([residual[:200]], [residual[200:]], 0.05, 0.05)
        detector = Detector(scaler, graph, calibrated)
    probe = Threshold(value=0.0, method="quantile", target_fpr=0.2, n_samples=100)
    scores = score_series(detector, probe, rows[of], WINDOW, rules).score
    threshold = probe.model_copy(update={"value": float(np.quantile(scores, quantile))})
    summary = dict.fromkeys(TrainingSummary.model_fields, 0) | {"source": "test", "cadence_s": None}
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model_version="rules-test",
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        features=simulator.FEATURES,
        scaler=ScalerParams.from_scaler(scaler),
        architecture=architecture,
        threshold=threshold,
        training=TrainingSummary.model_validate(summary),
        validation=ValidationFigures.model_validate(
            dict.fromkeys(ValidationFigures.model_fields, 1)
        ),
        weights_sha256="0" * 64,
        graph_sha256="0" * 64,
        rules=rules,
        drift=detector.drift,
    )
    return Artifact(manifest, detector)


NOISY = (0.8, slice(None))  # threshold at the 80th percentile: episodes open and end often
QUIET = (0.99, slice(0, 300))  # at the 99th of the normal part: the fault's episodes


def streamed(model: Artifact, rows: np.ndarray, batch_sizes: list[int]) -> list[tuple[str, int]]:
    """(type, offset of the record that triggered it) of each event the worker publishes."""
    processor = BatchProcessor(TOPICS, BatchSettings(), AlertSettings())
    processor.set_model(model)
    raw = []
    for i, row in enumerate(rows):
        values = dict(zip(simulator.FEATURES, row.tolist(), strict=True))
        ts = simulator.timestamp(i).isoformat()
        raw.append((b"p", json.dumps({"asset_id": "p", "ts": ts, "values": values}).encode()))
    records = as_records(raw, partitions=1)
    out, at = [], 0
    sizes = iter(batch_sizes * (len(records) // min(batch_sizes) + 1))
    while at < len(records):
        batch = records[at : at + next(sizes)]
        at += len(batch)
        for message in processor.process(batch).messages:
            event = json.loads(message.value)
            out.append((event["type"], event["source"]["offset"]))
    return out


# the onset rule: off; on with a history longer than the window (the default); on with a
# history shorter than the window (the worker reads the last records of a longer ring)
ONSETS = [{"onset_step": 0.0}, {"onset_step": 8.0}, {"onset_step": 3.0, "onset_span": 3,
          "onset_mean": 2}]  # fmt: skip


@pytest.mark.parametrize(("hold", "rate"), [(0.0, 1.0), (60.0, 1.0), (60.0, 0.1)])
@pytest.mark.parametrize("onset", ONSETS)
@pytest.mark.parametrize("end_drop", [0.0, 2.0])
@pytest.mark.parametrize("threshold", [NOISY, QUIET])
@pytest.mark.parametrize("seed", [1, 2])
def test_streamed_events_equal_the_offline_rules_on_recorded_series(
    seed: int,
    threshold: tuple[float, slice],
    end_drop: float,
    onset: dict[str, float],
    hold: float,
    rate: float,
) -> None:
    rows = recorded(seed)
    rules = Rules(
        open_after=3, resolve_after=5, end_drop=end_drop, resolve_after_s=hold, score_rate=rate,
        **onset,
    )  # fmt: skip
    model = artifact(rows, rules, *threshold)
    scored = score_series(model.detector, model.threshold, rows, WINDOW, rules)
    times = [simulator.timestamp(i) for i in range(WINDOW - 1, len(rows))]
    offline = [
        (kind, WINDOW - 1 + i)
        for i, kind, _ in changes(scored.score, scored.above, rules, times, scored.onset)
    ]
    assert len(offline) >= 2  # episodes open and end: the comparison means something
    kinds = {kind for kind, _ in offline}
    assert ("quiet" in kinds) == (hold > 0)
    if hold and rate == 1 and threshold is NOISY and not onset["onset_step"]:  # joined
        assert "resume" in kinds
    assert streamed(model, rows, [1, 7, 50, 500]) == offline
    assert streamed(model, rows, [200]) == offline


@pytest.mark.parametrize("end_drop", [0.0, 2.0])
@pytest.mark.parametrize("threshold", [NOISY, QUIET])
@pytest.mark.parametrize("seed", [1, 2])
def test_streamed_events_equal_the_offline_rules_with_the_residual_drift(
    seed: int, threshold: tuple[float, slice], end_drop: float
) -> None:
    """The worker advances each asset's drift record by record, batch after batch, as the
    offline entry points do over the whole series; the drift holds active episodes longer."""
    rows = recorded(seed)
    rules = Rules(end_drop=end_drop, resolve_after_s=60.0, score_rate=0.1)
    model = artifact(rows, rules, *threshold, drift=True)
    scored = score_series(model.detector, model.threshold, rows, WINDOW, rules)
    times = [simulator.timestamp(i) for i in range(WINDOW - 1, len(rows))]
    offline = [
        (kind, WINDOW - 1 + i)
        for i, kind, _ in changes(
            scored.score, scored.above, rules, times, scored.onset, scored.residual, scored.drift
        )
    ]
    without = [
        (kind, WINDOW - 1 + i)
        for i, kind, _ in changes(scored.score, scored.above, rules, times, scored.onset)
    ]
    assert offline != without  # the drift changes the decisions: the comparison means something
    assert streamed(model, rows, [1, 7, 50, 500]) == offline
    assert streamed(model, rows, [200]) == offline


def test_the_drop_rule_changes_the_decisions_on_these_series() -> None:
    """The series above exercise the drop rule: with it the settled state is not flagged."""
    rows = recorded(1)
    model = artifact(rows, Rules(), *QUIET)
    with_drop = series_flags(model.detector, model.threshold, rows, WINDOW, Rules(end_drop=2))
    without = series_flags(model.detector, model.threshold, rows, WINDOW, Rules(end_drop=0))
    assert with_drop.sum() < without.sum()


def test_the_worker_serves_the_models_rules_unless_overridden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = recorded(1)
    model = artifact(rows, Rules(open_after=2, resolve_after=4, end_drop=3.0), *QUIET)
    processor = BatchProcessor(TOPICS, BatchSettings(), AlertSettings())
    processor.set_model(model)
    assert processor.rules == model.manifest.rules
    overriding = BatchProcessor(TOPICS, BatchSettings(), AlertSettings(end_drop=0))
    with caplog.at_level("WARNING", logger="worker.pipeline"):
        overriding.set_model(model)
    assert overriding.rules == Rules(open_after=2, resolve_after=4, end_drop=0)
    assert "overridden by WORKER_ALERTS__*: {'end_drop': 0.0}" in caplog.text


@pytest.mark.parametrize(("end_drop", "expected_f1"), [(0.0, 2 / 3), (2.0, 1.0)])
def test_the_gate_judges_a_labelled_file_by_the_models_rules_drop_rule_included(
    end_drop: float, expected_f1: float
) -> None:
    """One sensor, window 1, score = value squared, threshold 1 (k 2, m 3): 3 records at 0,
    a fault of 6 at 4 (score 16, labelled), then 6 at 2 (score 4, labelled normal, still
    above the threshold). Without the drop rule one episode covers all 12 records above:
    6 right, 6 false, none missed: F1 = 2 x 6 / (2 x 6 + 6 + 0) = 2/3. With drop 2 the
    records at 4 lie under 16 / 2: after 3 of them the episode ends, covering the fault
    only: F1 = 1."""
    values = np.array([0.0] * 3 + [4.0] * 6 + [2.0] * 6)[:, None]
    labels = np.array([0] * 3 + [1] * 6 + [0] * 6, dtype=float)
    series = AssetSeries("p", np.arange(15, dtype=float), values, labels)
    history = SensorHistory("labelled", ("x",), (series,), has_timestamps=False)
    scaler = RobustScaler(center=np.zeros(1), scale=np.ones(1))
    threshold = Threshold(value=1.0, method="quantile", target_fpr=0.1, n_samples=10)
    rules = Rules(open_after=2, resolve_after=3, end_drop=end_drop, onset_step=0.0, score_rate=1)
    model = Scored(Detector(scaler, zeros()), threshold, 1, ("x",), rules)
    assert f1(model, history) == pytest.approx(expected_f1)
