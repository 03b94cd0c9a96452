"""One training run: read, split, fit, calibrate, write the artifact and report, publish.

Nothing is published unless every step succeeded: the artifact is written to the store's
staging area and renamed into place only at the end.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.data import DataError, SensorHistory, read_history
from training.fit import Epoch, WindowIndex, fit_autoencoder
from training.progress import EpochProgress
from training.report import write_report
from training.settings import TrainingSettings
from worker.model import (
    FORMAT_VERSION,
    ArchitectureConfig,
    Detector,
    Manifest,
    ModelStore,
    RobustScaler,
    ScalerParams,
    TrainingSummary,
    ValidationFigures,
    calibrate,
    default_latent,
    sliding_windows,
    write_artifact,
)
from worker.model.detector import Scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    """The published version, its manifest and where it lies."""

    version: str
    manifest: Manifest
    directory: Path


def train(settings: TrainingSettings, progress: EpochProgress | None = None) -> TrainingOutcome:
    """Train on `settings.data`, publish the model to `settings.store` and make it current.

    Raises DataError for unusable data, CalibrationError when the held-out part cannot
    support the target rate, ArtifactError when the store refuses the result.
    """
    started = time.monotonic()
    history = read_history(settings.data)
    fit_part, holdout_part = history.split_by_time(settings.data.holdout_fraction)
    window = settings.model.window
    log.info(
        "read %d rows of %d features for %d assets from %s: %d to fit, %d held out",
        history.rows, len(history.features), len(history.series), history.source,
        fit_part.rows, holdout_part.rows,
    )  # fmt: skip
    _require_windows("fit", fit_part, window)
    _require_windows("held-out", holdout_part, window)
    scaler = RobustScaler.fit(np.concatenate([s.values for s in fit_part.series]))
    fit_windows = WindowIndex([s.values for s in fit_part.series], scaler, window)
    holdout_windows = WindowIndex([s.values for s in holdout_part.series], scaler, window)

    n_inputs = len(history.features) * window
    architecture = ArchitectureConfig(
        n_features=len(history.features),
        window=window,
        hidden=settings.model.hidden,
        latent=settings.model.latent or default_latent(n_inputs),
    )
    try:
        result = fit_autoencoder(
            fit_windows, holdout_windows, architecture, settings.model, progress or _quiet
        )
    finally:
        if progress is not None:
            progress.close()
    detector = Detector(scaler, result.network)
    scores = _score_history(detector, holdout_part, window)
    calibration = settings.calibration
    threshold = calibrate(scores.score, calibration.target_fpr, calibration.method)
    best = result.history[result.best_epoch - 1]
    log.info(
        "fitted in %d epochs (best %d, held-out loss %.5f); threshold %.5g by %s at FPR %g",
        len(result.history), result.best_epoch, best.holdout_loss, threshold.value,
        threshold.method, threshold.target_fpr,
    )  # fmt: skip

    created_at = datetime.now(UTC)
    first_ts, last_ts = history.time_range()
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model_version=f"{created_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        created_at=created_at,
        features=history.features,
        scaler=ScalerParams.from_scaler(scaler),
        architecture=architecture,
        threshold=threshold,
        training=TrainingSummary(
            source=history.source,
            rows=history.rows,
            assets=len(history.series),
            fit_rows=fit_part.rows,
            holdout_rows=holdout_part.rows,
            fit_windows=len(fit_windows),
            holdout_windows=len(holdout_windows),
            first_ts=first_ts,
            last_ts=last_ts,
            seed=settings.model.seed,
        ),
        validation=ValidationFigures(
            fit_loss=best.fit_loss,
            holdout_loss=float(scores.score.mean()),
            holdout_fpr=float(threshold.exceeds(scores.score).mean()),
            holdout_score_p50=float(np.quantile(scores.score, 0.5)),
            holdout_score_p99=float(np.quantile(scores.score, 0.99)),
            holdout_score_max=float(scores.score.max()),
            epochs=len(result.history),
            best_epoch=result.best_epoch,
        ),
        weights_sha256="0" * 64,  # write_artifact fills in the real checksum
    )
    store = ModelStore(settings.store.path)
    with store.staging() as staging:
        manifest = write_artifact(staging, manifest, result.network.state_dict())
        write_report(
            staging,
            manifest,
            result.history,
            scores.score,
            settings.model_dump(mode="json"),
            time.monotonic() - started,
        )
        version = store.publish(staging, make_current=True)
    log.info("published model %s to %s and made it current", version, store.root)
    return TrainingOutcome(version, manifest, store.versions_dir / version)


def _quiet(epoch: Epoch, improved: bool) -> None:
    """Progress for callers that want none."""


def _score_history(detector: Detector, part: SensorHistory, window: int) -> Scores:
    """Score every window of every asset, exactly as the worker scores a stream."""
    batches = [detector.score(sliding_windows(s.values, window)) for s in part.series]
    batches = [b for b in batches if len(b.score)]
    return Scores(
        score=np.concatenate([b.score for b in batches]),
        shares=np.concatenate([b.shares for b in batches]),
    )


def _require_windows(part: str, history: SensorHistory, window: int) -> None:
    longest = max((len(s.ts) for s in history.series), default=0)
    if longest < window:
        raise DataError(
            f"the {part} part has no window of {window} consecutive rows of one asset "
            f"(its longest asset has {longest} rows): fewer rows than one window. Use more "
            "data, a smaller window, or another held-out fraction."
        )
