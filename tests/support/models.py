"""Paths, training data and settings for the tests, and ways to forge an artifact."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomaly.model import (
    FORMAT_VERSION,
    ArchitectureConfig,
    Drift,
    Manifest,
    ModelStore,
    ScalerParams,
    Threshold,
    TrainingSummary,
    ValidationFigures,
    write_artifact,
)
from anomaly.model.artifact import GRAPH, MANIFEST, WEIGHTS, _sha256
from anomaly.model.features import FloatArray
from devtools import simulator
from training.autoencoder import build_autoencoder
from training.graph import export_graph, saved_weights
from training.job import TrainingOutcome, train
from training.settings import TrainingSettings

REPO = Path(__file__).resolve().parents[2]


SKAB = REPO.parent / "shared" / "data" / "skab"


def write_csv(path: Path, rows: FloatArray) -> None:
    """Rows as CSV with an ISO `timestamp` column (one per second) and the simulator's features."""
    lines = [",".join(["timestamp", *simulator.FEATURES])]
    for i, row in enumerate(rows):
        lines.append(",".join([simulator.timestamp(i).isoformat(), *map(repr, row.tolist())]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def settings_for(
    data: Path, store: Path, calibration: dict[str, object] | None = None, **model: object
) -> TrainingSettings:
    """Training settings for a CSV written by write_csv: calibration on the whole held-out
    part (no gate slice), no margin above it and no hygiene, single records unless a window
    is given, so that the model tests see plain training and calibration; and each record
    judged by its own score with no hold (an episode resolves at its m-th record below) and no
    residual drift: the tests of the worker count records."""
    return TrainingSettings(
        data={"path": data, "timestamp_column": "timestamp"},
        model={"epochs": 150, "patience": 10, "batch_size": 128, "window": 1, **model},
        calibration={"margin": 1.0, "drift_rate": 0.0, **(calibration or {})},
        rules={"resolve_after_s": 0.0, "score_rate": 1.0},
        clean={"enabled": False},
        gate={"fraction": 0},
        store={"path": store},
    )


def train_compressors(store: Path, seed: int = 0) -> TrainingOutcome:
    """A window-1 model of the simulator's compressors (five sensors of their own: another
    asset type than the session's pumps), trained into the store root `store` as the named
    model `compressor`."""
    data = store.parent / f"compressors-{seed}.jsonl"
    fleet = simulator.Fleet(4, seed=3, kind=simulator.COMPRESSOR)
    data.write_bytes(b"".join(value + b"\n" for _, value in fleet.records(2500)))
    return train(TrainingSettings(
        data={"path": data}, model={"window": 1, "epochs": 60, "patience": 8, "seed": seed},
        clean={"enabled": False}, gate={"fraction": 0},
        store={"path": store, "model": "compressor"}, log_level="WARNING",
    ))  # fmt: skip


@dataclass(frozen=True)
class Trained:
    outcome: TrainingOutcome
    store: ModelStore

    @property
    def root(self) -> Path:
        """The store's directory."""
        return Path(self.store.location)


def edit_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def replace_weights(directory: Path, payload: object) -> None:
    """Write new weights and make the manifest's checksum agree (a consistent forgery)."""
    torch.save(payload, directory / WEIGHTS)
    digest = _sha256(directory / WEIGHTS)
    edit_manifest(directory, lambda m: m.update(weights_sha256=digest))


def replace_graph(directory: Path, data: bytes) -> None:
    """Write another graph and make the manifest's checksum agree (a consistent forgery)."""
    (directory / GRAPH).write_bytes(data)
    digest = _sha256(directory / GRAPH)
    edit_manifest(directory, lambda m: m.update(graph_sha256=digest))


# The architecture of the random models (`write_random`).
RANDOM = ArchitectureConfig(n_features=len(simulator.FEATURES), window=2, hidden=(8,), latent=3)


def write_random(directory: Path, version: str) -> None:
    """An untrained (randomly initialised, seeded by the name) model's artifact, named
    `version`, written into `directory` (a store's staging directory)."""
    n = len(simulator.FEATURES)
    architecture = RANDOM
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model_version=version,
        created_at=datetime(2026, 11, 21, tzinfo=UTC),
        features=simulator.FEATURES,
        scaler=ScalerParams(center=(0.0,) * n, scale=(1.0,) * n),
        architecture=architecture,
        threshold=Threshold(value=1.0, method="quantile", target_fpr=0.01, n_samples=100),
        training=TrainingSummary.model_validate(
            dict.fromkeys(TrainingSummary.model_fields, 0) | {"source": "test", "cadence_s": 1.0}
        ),
        validation=ValidationFigures.model_validate(
            dict.fromkeys(ValidationFigures.model_fields, 1)
        ),
        weights_sha256="0" * 64,
        graph_sha256="0" * 64,
    )
    write_artifact(directory, manifest, *_random_network(architecture, len(version)))


@functools.cache
def _random_network(architecture: ArchitectureConfig, seed: int) -> tuple[bytes, bytes]:
    """The weights and the graph of a network initialised from `seed` (an export takes a
    second: made once per seed)."""
    torch.manual_seed(seed)
    network = build_autoencoder(architecture)
    return saved_weights(network), export_graph(network)


def race_publishers(
    open_store: Callable[[], ModelStore], names: list[str], replaces: str | None
) -> dict[str, object]:
    """Each name published at once by a store of its own (as separate training runs are),
    all claiming to replace `replaces`: name -> the version published, or the exception."""
    for name in names:  # exported here, one at a time: torch's exporter is not for threads
        _random_network(RANDOM, len(name))
    barrier = threading.Barrier(len(names))
    outcomes: dict[str, object] = {}

    def publish(name: str) -> None:
        store = open_store()
        with store.staging() as staging:
            write_random(staging, name)
            barrier.wait(30)
            try:
                outcomes[name] = store.publish(staging, replaces=replaces)
            except Exception as exc:  # the caller asserts which
                outcomes[name] = exc

    threads = [threading.Thread(target=publish, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def excess(drift: Drift, residuals: np.ndarray) -> np.ndarray:
    """The drift of each of one asset's consecutive records from its first (`Drift.advance`
    record by record, as the rules run it while they follow an asset)."""
    z, out = None, []
    for row in residuals:
        z, value = drift.advance(z, row)
        out.append(value)
    return np.array(out)
