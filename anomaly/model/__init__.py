"""The model shared by the worker and the training job.

Imports numpy, onnxruntime, pydantic and the alert rules a manifest records (anomaly.rules);
never torch (the training job's: training/autoencoder.py, training/graph.py). Data flows one
way through it:
features (scaler, windows) -> graph (the exported autoencoder) -> detector (scores, shares,
residuals) -> calibration (threshold, drift) -> artifact (manifest + graph + weights) ->
store (versions + current pointer).
"""

from anomaly.model.architecture import ArchitectureConfig, default_latent
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
from anomaly.model.calibration import Threshold, calibrate
from anomaly.model.detector import Detector, Scores
from anomaly.model.drift import Drift
from anomaly.model.errors import ArtifactError, CalibrationError, ModelError
from anomaly.model.features import RobustScaler, sliding_windows
from anomaly.model.graph import Graph
from anomaly.model.store import ModelStore, VersionInfo, model_names, model_store

__all__ = [
    "FORMAT_VERSION",
    "ArchitectureConfig",
    "Artifact",
    "ArtifactError",
    "CalibrationError",
    "Detector",
    "Drift",
    "Graph",
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
    "calibrate",
    "default_latent",
    "load_artifact",
    "model_names",
    "model_store",
    "read_manifest",
    "sliding_windows",
    "write_artifact",
]
