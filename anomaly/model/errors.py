"""Errors raised by the model module. Each message says what went wrong and what to do next."""


class ModelError(Exception):
    """Base class of every error the model module raises on purpose."""


class CalibrationError(ModelError):
    """A threshold cannot be calibrated as asked (too few scores for the target rate...)."""


class ArtifactError(ModelError):
    """An artifact or the model store is missing, corrupt or incompatible; nothing was loaded."""
