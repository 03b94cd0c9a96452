"""The model shared by the worker and the training job.

Imports torch, numpy, pydantic and the alert rules a manifest records (anomaly.rules). Data
flows one way through it:
features (scaler, windows) -> autoencoder -> detector (scores, shares, residuals) ->
calibration (threshold, drift) -> artifact (manifest + weights) -> store (versions + current
pointer).
"""

from anomaly.model.artifact import (
    FORMAT_VERSION,
    Artifact,
    Manifest,
    ScalerParams,
    TrainingSummary,
    ValidationFigures,
    load_artifact,
    read_manifest,
    write_artifact,
)
from anomaly.model.autoencoder import ArchitectureConfig, build_autoencoder, default_latent
from anomaly.model.calibration import Threshold, calibrate
from anomaly.model.detector import Detector, Scores
from anomaly.model.drift import Drift
from anomaly.model.errors import ArtifactError, CalibrationError, ModelError
from anomaly.model.features import RobustScaler, sliding_windows
from anomaly.model.store import ModelStore, VersionInfo, model_names, model_store

__all__ = [
    "FORMAT_VERSION",
    "ArchitectureConfig",
    "Artifact",
    "ArtifactError",
    "CalibrationError",
    "Detector",
    "Drift",
    "Manifest",
    "ModelError",
    "ModelStore",
    "RobustScaler",
    "ScalerParams",
    "Scores",
    "Threshold",
    "TrainingSummary",
    "ValidationFigures",
    "VersionInfo",
    "build_autoencoder",
    "calibrate",
    "default_latent",
    "load_artifact",
    "model_names",
    "model_store",
    "read_manifest",
    "sliding_windows",
    "write_artifact",
]
