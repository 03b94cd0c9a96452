"""The model shared by the worker and the training job.

Imports only torch, numpy and pydantic. Data flows one way through it:
features (scaler, windows) -> autoencoder -> detector (scores, shares) -> calibration
(threshold) -> artifact (manifest + weights) -> store (versions + current pointer).
"""

from worker.model.artifact import (
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
from worker.model.autoencoder import ArchitectureConfig, build_autoencoder, default_latent
from worker.model.calibration import Threshold, calibrate
from worker.model.detector import Detector, Scores
from worker.model.errors import ArtifactError, CalibrationError, ModelError
from worker.model.features import RobustScaler, sliding_windows
from worker.model.store import ModelStore, VersionInfo

__all__ = [
    "FORMAT_VERSION",
    "ArchitectureConfig",
    "Artifact",
    "ArtifactError",
    "CalibrationError",
    "Detector",
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
    "read_manifest",
    "sliding_windows",
    "write_artifact",
]
