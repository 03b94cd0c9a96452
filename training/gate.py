"""The gate: may the candidate replace the model in service?

Both are scored on the same held-out clean slice (the latest rows, never used to fit or
calibrate the candidate). The candidate is promoted only if
- its false-positive rate there, at its own threshold as calibrated (before any margin),
  lies within `fpr_factor` of the target (checked when the slice expects at least 10 false
  positives among n / window independent scores; fewer cannot tell);
- its reconstruction error there is at most (1 + error_margin) times the service model's,
  both measured in the candidate's scaled units, so two scalers compare fairly (checked when
  both have the same kind and window: the error of another shape does not compare);
- with a labelled validation file, its F1 there is not lower than the service model's, each
  model's records flagged by its own alert rules (the rules the workers apply with it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from anomaly.instruments import SensorProfile
from anomaly.model import Artifact, Detector, Threshold, sliding_windows
from anomaly.model.architecture import Kind
from anomaly.model.calibration import exceed
from anomaly.rules import Rules
from anomaly.scoring import series_flags, series_scores
from training.budget import budgets, per_asset_week
from training.data import SensorHistory, read_history
from training.settings import DataSettings, GateSettings

log = logging.getLogger(__name__)

MIN_EXPECTED_FALSE_POSITIVES = 10


@dataclass(frozen=True)
class Scored:
    """A model as the gate sees it."""

    detector: Detector
    threshold: Threshold
    window: int
    features: tuple[str, ...]
    rules: Rules
    version: str | None = None
    asset_thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    kind: Kind = "dense"  # the architecture's kind
    instruments: SensorProfile | None = None  # what training showed of each sensor

    def threshold_for(self, asset_id: str) -> Threshold:
        """The asset's own threshold if it has one, else the model's."""
        return self.asset_thresholds.get(asset_id, self.threshold)

    @classmethod
    def of(cls, artifact: Artifact) -> Scored:
        """A stored version as the gate sees it."""
        m = artifact.manifest
        return cls(
            artifact.detector, m.threshold, m.window, m.features, m.rules, m.model_version,
            m.asset_thresholds, m.architecture.kind, m.instruments,
        )  # fmt: skip


@dataclass
class Decision:
    """Promote or not, why, and the figures behind it."""

    promoted: bool = True
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float | int | str | None] = field(default_factory=dict)
    # each model's episodes per week by asset over the gate's range ("candidate", "service")
    budgets: dict[str, dict[str, float]] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.promoted = False
        self.reasons.append(reason)


def decide(
    candidate: Scored,
    service: Scored | None,
    slice_: SensorHistory,
    settings: GateSettings,
    data: DataSettings,
) -> Decision:
    """Apply every rule; the decision lists each rule that failed."""
    decision = Decision()
    figures = decision.figures
    figures["service_version"] = service.version if service else None
    target = candidate.threshold.target_fpr
    scores, limits = _scores(candidate, slice_)
    n = len(scores)
    figures["gate_records"] = n
    if n == 0:
        decision.reasons.append("no held-out records for the gate: promoted unchecked")
        return decision
    # The calibration is checked, not the margin above it, which lowers the rate on purpose
    # (each asset's threshold carries the model's margin). Each asset at its own threshold.
    margin = candidate.threshold.margin
    fpr = float(exceed(scores, limits / margin).mean())
    figures["candidate_fpr"] = fpr
    if margin != 1.0:
        figures["candidate_fpr_with_margin"] = float(exceed(scores, limits).mean())
    # Overlapping windows share all but one record: an outlying record lifts the scores of
    # the `window` windows that hold it, so n scores count as about n / window independent
    # ones, and only those can tell whether the rate is off.
    independent = n / candidate.window
    if independent * target >= MIN_EXPECTED_FALSE_POSITIVES:
        low, high = target / settings.fpr_factor, target * settings.fpr_factor
        if not low <= fpr <= high:
            decision.reject(
                f"false-positive rate {fpr:.4g} on {n} held-out clean records is outside "
                f"[{low:.4g}, {high:.4g}] (target {target:g}, factor {settings.fpr_factor:g})"
            )
    else:
        figures["fpr_check"] = (
            f"skipped: {n} records (windows of {candidate.window}) expect fewer than 10 "
            "independent false positives"
        )
    scale = candidate.detector.scaler.scale
    figures["candidate_error"] = cand_error = _error(candidate, slice_, scale)
    if service is not None and _architecture(service) != _architecture(candidate):
        figures["error_check"] = (
            f"skipped: the service model is a {_architecture(service)}, the candidate a "
            f"{_architecture(candidate)}; their errors do not compare"
        )
    elif service is not None and service.features == candidate.features:
        figures["service_error"] = service_error = _error(service, slice_, scale)
        if cand_error > service_error * (1 + settings.error_margin):
            decision.reject(
                f"held-out error {cand_error:.4g} is worse than the service model's "
                f"{service_error:.4g} by more than {settings.error_margin:.0%}"
            )
    elif service is not None:
        figures["error_check"] = "skipped: the service model has other features"
    _budget(decision, candidate, service, slice_, settings.max_episodes_per_asset_week)
    if settings.validation_path is not None:
        labelled = read_history(
            data.model_copy(
                update={"path": settings.validation_path, "format": "auto",
                        "features": candidate.features, "label_column": settings.validation_label}
            )
        )  # fmt: skip
        figures["candidate_f1"] = cand_f1 = f1(candidate, labelled)
        if service is not None and service.features == candidate.features:
            figures["service_f1"] = service_f1 = f1(service, labelled)
            if cand_f1 < service_f1:
                decision.reject(
                    f"F1 {cand_f1:.4f} on {settings.validation_path} is lower than the "
                    f"service model's {service_f1:.4f}"
                )
    return decision


def _budget(
    decision: Decision,
    candidate: Scored,
    service: Scored | None,
    slice_: SensorHistory,
    most: float | None,
) -> None:
    """Each model's episodes per asset per week over the gate's records (training/budget.py),
    the candidate refused above `most` (None: no budget)."""
    for name, model in (("candidate", candidate), ("service", service)):
        if model is None or model.features != candidate.features:
            continue
        found = budgets(model, slice_)
        rate = per_asset_week(found)
        decision.figures[f"{name}_episodes_per_asset_week"] = round(rate, 3)
        decision.budgets[name] = {b.asset_id: round(b.per_week, 3) for b in found}
        if name == "candidate" and most is not None and rate > most:
            decision.reject(
                f"{rate:.3g} episodes per asset per week on the held-out records, over the "
                f"budget of {most:g} (TRAINING_GATE__MAX_EPISODES_PER_ASSET_WEEK)"
            )


def f1(model: Scored, labelled: SensorHistory) -> float:
    """Pooled F1 of the per-record decisions (inside an episode, by the model's rules) against
    the labels."""
    tp = fp = fn = 0
    for s in labelled.series:
        assert s.labels is not None
        threshold = model.threshold_for(s.asset_id)
        flagged = series_flags(
            model.detector, threshold, s.values, model.window, model.rules, model.instruments
        )
        truth = s.labels.astype(bool)
        tp += int((flagged & truth).sum())
        fp += int((flagged & ~truth).sum())
        fn += int((~flagged & truth).sum())
    return tp / (tp + (fp + fn) / 2) if tp + fp + fn else 1.0


def _architecture(model: Scored) -> str:
    """The model's kind and window: what its reconstruction error depends on besides data."""
    return f"{model.kind} model of window {model.window}"


def _scores(model: Scored, slice_: SensorHistory) -> tuple[np.ndarray, np.ndarray]:
    """The scores of every series, and the threshold each is compared with (its asset's)."""
    parts = [series_scores(model.detector, s.values, model.window) for s in slice_.series]
    limits = [
        np.full(len(part), model.threshold_for(s.asset_id).value)
        for part, s in zip(parts, slice_.series, strict=True)
    ]
    if not parts:
        return np.empty(0), np.empty(0)
    return np.concatenate(parts), np.concatenate(limits)


def _error(model: Scored, slice_: SensorHistory, scale: np.ndarray) -> float:
    """Mean squared reconstruction error per value, in units of `scale`."""
    total, count = 0.0, 0
    for s in slice_.series:
        if len(s.ts) < model.window:
            continue
        windows = sliding_windows(s.values, model.window)
        residual = (model.detector.reconstruct(windows) - windows) / scale
        total += float((residual**2).sum())
        count += residual.size
    return total / count if count else float("nan")
