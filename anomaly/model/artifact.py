"""The artifact: one directory per model version, a validated manifest, the weights and the
graph the worker runs.

    <version>/manifest.json   Manifest (JSON), validated on load
    <version>/model.onnx      the fitted autoencoder as an ONNX graph (anomaly/model/graph.py)
    <version>/weights.pt      its torch state dict (the training job's: what the graph was
                              exported from; never read by the worker)

Both files are checksummed in the manifest. `load_artifact` refuses, with an ArtifactError
that says why, anything it cannot serve exactly as trained: missing files, corrupt or
truncated files, a format version it does not know, a manifest inconsistent with itself or
with its graph, a graph that produces non-finite output. Versions written before the graph
(formats 1 to 6) are refused with the command that exports one from their weights, unless the
caller (the training job, which has torch) passes `rebuild` to export it in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anomaly.instruments import SensorProfile
from anomaly.model.architecture import ArchitectureConfig
from anomaly.model.calibration import Threshold
from anomaly.model.detector import Detector
from anomaly.model.drift import Drift
from anomaly.model.errors import ArtifactError
from anomaly.model.features import RobustScaler
from anomaly.model.graph import Graph
from anomaly.rules import Rules
from anomaly.states import OperatingStates, StateRuleError

# 2: the manifest records the alert rules. Version 1 manifests (0.1.x) still load, with the
# rules 0.1.x workers applied by default.
# 3: the scaler records the features flat in training (their scaled values are bounded) and
# each feature's noise (the onset rule's unit); the rules hold the onset rule. Versions 1 and
# 2 load with no flat feature, the scale as the noise, and the onset rule off, as they ran.
# 4: per-asset thresholds (`asset_thresholds`: asset id -> Threshold; the model's `threshold`
# for every other asset). Versions 1 to 3 have none.
# 5: the rules hold `resolve_after_s` (a quiet episode's hold) and `score_rate` (the judged
# score's average). Versions 1 to 4 load with neither (no hold, each record judged by its own
# score), as they ran.
# 6: the residual drift's calibration (`drift`, anomaly/model/drift.py; None: without it).
# Versions 1 to 5 have none.
# 7: the ONNX graph (`model.onnx`, `graph_sha256`), which the worker runs. Versions 1 to 6
# have none: their manifests still read (listing, reports); serving them needs a graph
# exported from their weights (`anomaly-train export-graph`).
# 8: the operating-state rule and the start-up grace (`states`, anomaly/states.py; None: the
# model knows no stop), and what training showed of each sensor (`instruments`,
# anomaly/instruments.py; None: no sensor faults told apart). Versions 1 to 7 have neither.
FORMAT_VERSION = 8
READABLE_FORMATS = (1, 2, 3, 4, 5, 6, 7, 8)
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
GRAPH = "model.onnx"
SHA256 = r"^[0-9a-f]{64}$"
# A version's weights -> its graph's ONNX bytes (training/graph.py: needs torch).
Rebuild = Callable[["Manifest", Path], bytes]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
VersionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScalerParams(_Frozen):
    """The robust scaler's per-feature centre and scale, in feature order, the indices of the
    features that were flat in training, and each feature's record-to-record noise (empty in
    formats 1 and 2: the scale stands in for it)."""

    center: tuple[FiniteFloat, ...]
    scale: tuple[Positive, ...]
    flat: tuple[int, ...] = ()
    noise: tuple[Positive, ...] = ()

    def to_scaler(self) -> RobustScaler:
        flat = None
        if self.flat:
            flat = np.zeros(len(self.center), dtype=bool)
            flat[list(self.flat)] = True
        return RobustScaler(
            center=np.array(self.center),
            scale=np.array(self.scale),
            flat=flat,
            noise=np.array(self.noise) if self.noise else None,
        )

    @classmethod
    def from_scaler(cls, scaler: RobustScaler) -> ScalerParams:
        return cls(
            center=tuple(scaler.center.tolist()),
            scale=tuple(scaler.scale.tolist()),
            flat=scaler.flat_features(),
            noise=() if scaler.noise is None else tuple(scaler.noise.tolist()),
        )


class TrainingSummary(_Frozen):
    """What the model was trained on."""

    source: str
    rows: int = Field(ge=0)
    assets: int = Field(ge=0)
    fit_rows: int = Field(ge=0)
    holdout_rows: int = Field(ge=0)
    fit_windows: int = Field(ge=0)
    holdout_windows: int = Field(ge=0)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    seed: int
    # the median time between an asset's consecutive records (None: rows without times);
    # the worker assembles one-value-per-message input at this cadence (format 4 on)
    cadence_s: Positive | None = None


class ValidationFigures(_Frozen):
    """How the model did on held-out clean data (scores are mean squared scaled errors)."""

    fit_loss: FiniteFloat
    holdout_loss: FiniteFloat
    holdout_fpr: FiniteFloat
    holdout_score_p50: FiniteFloat
    holdout_score_p99: FiniteFloat
    holdout_score_max: FiniteFloat
    epochs: int = Field(ge=0)
    best_epoch: int = Field(ge=0)


class Manifest(_Frozen):
    """Everything a worker needs to rebuild, validate and serve one model version."""

    format_version: int
    model_version: VersionName
    created_at: datetime
    features: tuple[str, ...] = Field(min_length=1)
    scaler: ScalerParams
    architecture: ArchitectureConfig
    threshold: Threshold
    training: TrainingSummary
    validation: ValidationFigures
    weights_sha256: str = Field(pattern=SHA256)
    rules: Rules = Rules()
    asset_thresholds: dict[Annotated[str, Field(min_length=1)], Threshold] = {}
    drift: Drift | None = None
    graph_sha256: str | None = Field(default=None, pattern=SHA256)
    states: OperatingStates | None = None
    instruments: SensorProfile | None = None

    @property
    def window(self) -> int:
        """Records per window: each record is scored with the window - 1 before it."""
        return self.architecture.window

    def threshold_for(self, asset_id: str) -> Threshold:
        """The asset's own threshold if it has one, else the model's."""
        return self.asset_thresholds.get(asset_id, self.threshold)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.format_version not in READABLE_FORMATS:
            raise ValueError(f"format_version must be one of {READABLE_FORMATS}")
        n = len(self.features)
        if len(set(self.features)) != n:
            raise ValueError("features contains duplicate names")
        if any(not name for name in self.features):
            raise ValueError("features contains an empty name")
        if (
            len(self.scaler.center) != n
            or len(self.scaler.scale) != n
            or (self.scaler.noise and len(self.scaler.noise) != n)
        ):
            raise ValueError(
                f"scaler has {len(self.scaler.center)}/{len(self.scaler.scale)}/"
                f"{len(self.scaler.noise) or '-'} centre/scale/noise values for {n} features"
            )
        if len(set(self.scaler.flat)) != len(self.scaler.flat) or any(
            not 0 <= i < n for i in self.scaler.flat
        ):
            raise ValueError(f"scaler.flat must list distinct feature indices below {n}")
        if self.architecture.n_features != n:
            raise ValueError(
                f"architecture.n_features is {self.architecture.n_features} for {n} features"
            )
        if self.drift is not None and self.drift.n_features != n:
            raise ValueError(f"drift has {self.drift.n_features} values for {n} features")
        if self.instruments is not None and self.instruments.features != self.features:
            raise ValueError("instruments.features differ from the model's features")
        if self.states is not None:
            try:
                self.states.rule(self.features)
            except StateRuleError as exc:
                raise ValueError(f"states.stopped_when: {exc}") from None
        if (self.graph_sha256 is None) != (self.format_version < 7):
            raise ValueError(
                "graph_sha256 is required from format version 7 on, and absent before it"
            )
        return self


@dataclass(frozen=True)
class Artifact:
    """A loaded, validated model version: its manifest and the detector it rebuilds."""

    manifest: Manifest
    detector: Detector

    @property
    def version(self) -> str:
        return self.manifest.model_version

    @property
    def threshold(self) -> Threshold:
        return self.manifest.threshold


def write_artifact(directory: Path, manifest: Manifest, weights: bytes, graph: bytes) -> Manifest:
    """Write the weights (a saved torch state dict) and the graph, then the manifest, into an
    existing, empty directory (a staging directory).

    Returns the manifest as written, with the files' checksums filled in. Files are fsynced;
    making them visible atomically is the store's job.
    """
    digests = {}
    for name, data in ((WEIGHTS, weights), (GRAPH, graph)):
        path = directory / name
        path.write_bytes(data)
        _fsync(path)
        digests[name] = hashlib.sha256(data).hexdigest()
    written = manifest.model_copy(
        update={"weights_sha256": digests[WEIGHTS], "graph_sha256": digests[GRAPH]}
    )
    manifest_path = directory / MANIFEST
    manifest_path.write_text(written.model_dump_json(indent=2) + "\n", encoding="utf-8")
    _fsync(manifest_path)
    return written


def read_manifest(directory: Path) -> Manifest:
    """Read and validate a version's manifest; ArtifactError says what is wrong."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"artifact {directory} does not exist")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(f"artifact {directory} has no {MANIFEST}") from exc
    except OSError as exc:
        raise ArtifactError(f"{path} is not readable: {exc}") from exc
    return parse_manifest(data, str(path))


def parse_manifest(data: bytes, path: str) -> Manifest:
    """Validate a manifest's bytes (read from `path`, named in the errors)."""
    try:
        raw: Any = json.loads(data)
    except ValueError as exc:
        raise ArtifactError(f"{path} is not readable JSON (corrupt or truncated): {exc}") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path} is not a JSON object")
    found = raw.get("format_version")
    if found not in READABLE_FORMATS:
        raise ArtifactError(
            f"{path} has format version {found!r}; this code reads versions "
            f"{', '.join(map(str, READABLE_FORMATS))}. Retrain with this release or run a "
            "release that reads that format."
        )
    if found == 1 and "rules" in raw:
        raise ArtifactError(f"{path} is invalid: format version 1 has no rules")
    scaler = raw.get("scaler")
    if found in (1, 2) and isinstance(scaler, dict) and (scaler.get("flat") or scaler.get("noise")):
        raise ArtifactError(
            f"{path} is invalid: format version {found} has no flat features and no noise"
        )
    if found in (1, 2, 3) and raw.get("asset_thresholds"):
        raise ArtifactError(f"{path} is invalid: format version {found} has no asset thresholds")
    rules = raw.get("rules")
    if found in (1, 2) and isinstance(rules, dict) and any(k.startswith("onset") for k in rules):
        raise ArtifactError(f"{path} is invalid: format version {found} has no onset rule")
    newer = ("resolve_after_s", "score_rate")
    if found in (1, 2, 3, 4) and isinstance(rules, dict) and any(k in rules for k in newer):
        raise ArtifactError(
            f"{path} is invalid: format version {found} has no hold and no judged score"
        )
    if found in (1, 2, 3, 4, 5) and raw.get("drift") is not None:
        raise ArtifactError(f"{path} is invalid: format version {found} has no drift")
    if found in (1, 2, 3, 4, 5, 6) and raw.get("graph_sha256") is not None:
        raise ArtifactError(f"{path} is invalid: format version {found} has no graph")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{path} is invalid: {_summarise(exc)}") from exc
    if found in (1, 2, 3, 4):  # served as they ran: no hold, and for 1 and 2 no onset rule
        rules = manifest.rules.model_copy(update={"resolve_after_s": 0.0, "score_rate": 1.0})
        return manifest.model_copy(
            update={"rules": rules.without_onset() if found in (1, 2) else rules}
        )
    return manifest


def load_artifact(directory: Path, rebuild: Rebuild | None = None) -> Artifact:
    """Load and validate a version directory into a ready-to-score Artifact. A version
    without a graph (formats 1 to 6) is refused, unless `rebuild` exports one from its
    weights."""
    manifest = read_manifest(directory)
    weights_path = _checked(directory, WEIGHTS, manifest.weights_sha256)
    if manifest.graph_sha256 is not None:
        data = _checked(directory, GRAPH, manifest.graph_sha256).read_bytes()
    elif rebuild is not None:
        data = rebuild(manifest, weights_path)
    else:
        raise ArtifactError(
            f"artifact {directory} (format version {manifest.format_version}) has no {GRAPH}, "
            "the graph the worker runs: export it from the version's weights with "
            f"`anomaly-train export-graph --version {manifest.model_version}` (the training "
            "image), which publishes it as a new version"
        )
    try:
        graph = Graph(data, manifest.window, len(manifest.features))
    except ArtifactError as exc:
        raise ArtifactError(f"{directory / GRAPH} was refused: {exc}") from exc
    detector = Detector(manifest.scaler.to_scaler(), graph, manifest.drift)
    probe = np.zeros((1, manifest.window, len(manifest.features)))
    probe += np.array(manifest.scaler.center)
    if not np.all(np.isfinite(detector.score(probe).score)):
        raise ArtifactError(f"{directory / GRAPH} produces non-finite scores; refusing it")
    return Artifact(manifest=manifest, detector=detector)


def _checked(directory: Path, name: str, sha256: str) -> Path:
    """The path of one of the version's files, once its checksum matches the manifest's."""
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"artifact {directory} has no {name}")
    digest = _sha256(path)
    if digest != sha256:
        raise ArtifactError(
            f"{path} is corrupt or truncated: its sha256 {digest[:12]}... does not "
            f"match the manifest's {sha256[:12]}..."
        )
    return path


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
        for err in exc.errors()
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())
