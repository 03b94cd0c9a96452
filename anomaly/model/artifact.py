"""The artifact: one directory per model version, a validated manifest plus the weights.

    <version>/manifest.json   Manifest (JSON), validated on load
    <version>/weights.pt      the autoencoder's state dict, loaded with weights_only=True

`load_artifact` refuses, with an ArtifactError that says why, anything it cannot serve
exactly as trained: missing files, corrupt or truncated weights, a format version it does not
know, a manifest inconsistent with itself or with the weights, weights that are not a plain
tensor dict (pickle payloads never execute) or that produce non-finite output.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anomaly.model.autoencoder import ArchitectureConfig, build_autoencoder
from anomaly.model.calibration import Threshold
from anomaly.model.detector import Detector
from anomaly.model.drift import Drift
from anomaly.model.errors import ArtifactError
from anomaly.model.features import RobustScaler
from anomaly.rules import Rules

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
FORMAT_VERSION = 6
READABLE_FORMATS = (1, 2, 3, 4, 5, 6)
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"

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
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rules: Rules = Rules()
    asset_thresholds: dict[Annotated[str, Field(min_length=1)], Threshold] = {}
    drift: Drift | None = None

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


def write_artifact(
    directory: Path, manifest: Manifest, state_dict: dict[str, torch.Tensor]
) -> Manifest:
    """Write weights then manifest into an existing, empty directory (a staging directory).

    Returns the manifest as written, with the weights' checksum filled in. Files are
    fsynced; making them visible atomically is the store's job.
    """
    weights_path = directory / WEIGHTS
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, weights_path)
    _fsync(weights_path)
    written = manifest.model_copy(update={"weights_sha256": _sha256(weights_path)})
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


def load_artifact(directory: Path) -> Artifact:
    """Load and validate a version directory into a ready-to-score Artifact."""
    manifest = read_manifest(directory)
    weights_path = directory / WEIGHTS
    if not weights_path.is_file():
        raise ArtifactError(f"artifact {directory} has no {WEIGHTS}")
    digest = _sha256(weights_path)
    if digest != manifest.weights_sha256:
        raise ArtifactError(
            f"{weights_path} is corrupt or truncated: its sha256 {digest[:12]}... does not "
            f"match the manifest's {manifest.weights_sha256[:12]}..."
        )
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here; all mean "not loadable weights".
        raise ArtifactError(
            f"{weights_path} was refused: not a plain tensor state dict ({exc})"
        ) from exc
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ArtifactError(f"{weights_path} was refused: not a dict of tensors")
    network = build_autoencoder(manifest.architecture)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{weights_path} does not match the manifest's architecture "
            f"{manifest.architecture.model_dump()}: {exc}"
        ) from exc
    detector = Detector(manifest.scaler.to_scaler(), network, manifest.drift)
    probe = np.zeros((1, manifest.window, len(manifest.features)))
    probe += np.array(manifest.scaler.center)
    if not np.all(np.isfinite(detector.score(probe).score)):
        raise ArtifactError(f"{weights_path} produces non-finite scores; refusing it")
    return Artifact(manifest=manifest, detector=detector)


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
