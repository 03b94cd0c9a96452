"""The threshold: calibrated to a target false-positive rate on held-out clean scores.

Three methods:
- `quantile`: the empirical (1 - rate) quantile. Needs at least 1/rate scores; with fewer it
  would be the maximum seen, not a calibrated value, so it is refused.
- `pot` (peaks over threshold, extreme value theory): fits a generalised Pareto distribution
  to the excesses over a high initial level and extrapolates to the target rate. Use it for
  low rates where the quantile has too few scores beyond it.
- `exp`: the same extrapolation with the tail's shape fixed at 0 (an exponential tail, the
  tail of squared errors), fitted on the top quarter of as few as 20 scores. For short
  histories, where POT's two-parameter fit on 30 peaks is out of reach.

Per-asset thresholds (`asset_thresholds`): in a fleet where assets of one type differ (one
pump runs noisier than its neighbours), one threshold alarms the noisy asset all day and hides
the quiet ones' faults. An asset with at least `min_windows` held-out scores gets its own
threshold, calibrated by the same method, rate and margin on its own scores; at most `limit`
assets do, those whose own threshold differs most from the model's; the rest use the model's.

The decision lives here too: `Threshold.exceeds` and `exceed` (one threshold per score) are
the only places a score becomes a flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from anomaly.model.errors import CalibrationError

Method = Literal["quantile", "pot", "exp"]
MethodChoice = Literal["auto", "quantile", "pot", "exp"]

# `auto` uses the quantile when this many held-out scores are expected above it, else POT
# when there are enough scores for it, else the exponential tail.
MIN_EXCEEDANCES = 10
# POT fits its tail on at least this many peaks, and on no more than a quarter of the scores.
MIN_PEAKS = 30
POT_TAIL_FRACTION = 0.02
# The exponential tail is fitted on the top quarter of the scores, at least this many.
MIN_EXP_PEAKS = 5
EXP_TAIL_FRACTION = 0.25
MIN_EXP_SCORES = 20

Rate = Annotated[float, Field(gt=0.0, lt=1.0)]

# The held-out scores' 99th percentile may be this many times the fit part's before the
# calibration is said to extrapolate from data the model never saw (two orders of magnitude).
SPREAD_LIMIT = 100.0


class PotFit(BaseModel):
    """The generalised Pareto tail that a POT threshold extrapolates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_level: float
    n_peaks: int
    shape: float
    scale: float


class Threshold(BaseModel):
    """A score threshold and how it was made; a score strictly above it is an outlier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float = Field(allow_inf_nan=False)
    method: Method
    target_fpr: Rate
    n_samples: int = Field(ge=1)
    pot: PotFit | None = None
    margin: float = Field(default=1.0, ge=1.0, allow_inf_nan=False)

    @model_serializer(mode="wrap")
    def _omit_no_margin(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a margin the manifest reads exactly as before margins existed."""
        data: dict[str, Any] = handler(self)
        if data.get("margin") == 1.0:
            data.pop("margin", None)
        return data

    def widened(self, margin: float) -> Threshold:
        """The threshold `margin` times higher (recorded): room for data that drifts beyond
        the held-out part, which calibration cannot see."""
        if margin == 1.0:
            return self
        return self.model_copy(update={"value": self.value * margin, "margin": margin})

    def exceeds(self, scores: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
        """True where a score is above the threshold."""
        return exceed(scores, self.value)


def exceed(
    scores: npt.NDArray[np.floating], thresholds: float | npt.NDArray[np.floating]
) -> npt.NDArray[np.bool_]:
    """True where a score is above its threshold (one for all, or one per score)."""
    return np.asarray(scores) > thresholds


def calibrate(scores: npt.ArrayLike, target_fpr: float, method: MethodChoice = "auto") -> Threshold:
    """A threshold that `target_fpr` of clean scores like these would exceed.

    `auto` picks the quantile when at least MIN_EXCEEDANCES scores are expected above the
    threshold, else POT when there are enough scores for its tail (4 x MIN_PEAKS), else the
    exponential tail. Raises CalibrationError, naming the remedy, when the scores cannot
    support the rate.
    """
    values = _validated(scores, target_fpr)
    if method == "auto":
        if len(values) * target_fpr >= MIN_EXCEEDANCES:
            method = "quantile"
        else:
            method = "pot" if len(values) >= 4 * MIN_PEAKS else "exp"
    if method == "quantile":
        return quantile_threshold(values, target_fpr)
    if method == "exp":
        return exp_threshold(values, target_fpr)
    return pot_threshold(values, target_fpr)


def quantile_threshold(scores: npt.ArrayLike, target_fpr: float) -> Threshold:
    """The smallest observed score with at most `target_fpr` of the scores above it."""
    values = _validated(scores, target_fpr)
    n = len(values)
    if target_fpr < 1.0 / n:
        raise CalibrationError(
            f"target false-positive rate {target_fpr:g} is below 1/n = {1.0 / n:g} for "
            f"{n} calibration scores: a quantile cannot resolve it. Use more held-out data "
            "(at least 1/rate records), a higher rate, or the 'pot' method."
        )
    # With k = floor(n * rate) scores allowed above, the threshold is the (k+1)-th largest.
    allowed_above = math.floor(n * target_fpr + 1e-9)
    value = float(np.sort(values)[n - 1 - allowed_above])
    return Threshold(value=value, method="quantile", target_fpr=target_fpr, n_samples=n)


def pot_threshold(scores: npt.ArrayLike, target_fpr: float) -> Threshold:
    """Peaks over threshold: a generalised Pareto tail fitted beyond a high initial level.

    The initial level leaves max(MIN_PEAKS, 2% of n) peaks above it; the target rate must
    lie beyond that level (below the fraction of peaks), where the fitted tail extrapolates.
    """
    values = np.sort(_validated(scores, target_fpr))
    n = len(values)
    n_peaks = max(MIN_PEAKS, math.ceil(POT_TAIL_FRACTION * n))
    if n_peaks > n // 4:
        raise CalibrationError(
            f"too few calibration scores for the 'pot' method: {n} given, at least "
            f"{4 * MIN_PEAKS} needed to fit a tail on {MIN_PEAKS} peaks. Use more held-out "
            "data or the 'quantile' method with a rate of at least 1/n."
        )
    if target_fpr * n >= n_peaks:
        raise CalibrationError(
            f"target false-positive rate {target_fpr:g} is not in the tail the 'pot' method "
            f"fits ({n_peaks} of {n} scores, rate {n_peaks / n:g}); use the 'quantile' method."
        )
    initial_level = float(values[n - n_peaks - 1])
    excesses = values[n - n_peaks :] - initial_level
    shape, scale = _fit_gpd_pwm(excesses)
    ratio = target_fpr * n / n_peaks
    if abs(shape) < 1e-6:
        value = initial_level - scale * math.log(ratio)
    else:
        value = initial_level + scale / shape * (ratio ** (-shape) - 1.0)
    if not math.isfinite(value):
        raise CalibrationError("the fitted tail gives a non-finite threshold; use 'quantile'")
    return Threshold(
        value=value,
        method="pot",
        target_fpr=target_fpr,
        n_samples=n,
        pot=PotFit(initial_level=initial_level, n_peaks=n_peaks, shape=shape, scale=scale),
    )


def exp_threshold(scores: npt.ArrayLike, target_fpr: float) -> Threshold:
    """Peaks over threshold with an exponential tail (shape 0): for few calibration scores.

    The initial level leaves the top max(MIN_EXP_PEAKS, 25% of n) scores above it; their mean
    excess is the tail's scale (the maximum-likelihood estimate), and the threshold is the
    level that tail exceeds with probability `target_fpr`. Squared reconstruction errors have
    an exponential-type tail, so one parameter fitted on a handful of peaks extrapolates more
    steadily than POT's two; a heavier real tail makes the threshold low (more alerts).
    """
    values = np.sort(_validated(scores, target_fpr))
    n = len(values)
    if n < MIN_EXP_SCORES:
        raise CalibrationError(
            f"too few calibration scores: {n} given, at least {MIN_EXP_SCORES} needed. Use "
            "more data, a larger held-out fraction or a shorter window."
        )
    n_peaks = max(MIN_EXP_PEAKS, math.ceil(EXP_TAIL_FRACTION * n))
    if target_fpr * n >= n_peaks:
        raise CalibrationError(
            f"target false-positive rate {target_fpr:g} is not in the tail the 'exp' method "
            f"fits ({n_peaks} of {n} scores, rate {n_peaks / n:g}); use the 'quantile' method."
        )
    initial_level = float(values[n - n_peaks - 1])
    scale = max(float((values[n - n_peaks :] - initial_level).mean()), 1e-12)
    value = initial_level + scale * math.log(n_peaks / (target_fpr * n))
    return Threshold(
        value=value,
        method="exp",
        target_fpr=target_fpr,
        n_samples=n,
        pot=PotFit(initial_level=initial_level, n_peaks=n_peaks, shape=0.0, scale=scale),
    )


class AssetChoice(BaseModel):
    """Which assets got a threshold of their own (the training report's `asset_thresholds`):
    `qualified` had at least `min_windows` held-out scores, `own` of them got one (at most
    `limit`: those furthest from the model's), and `thresholds` lists them with their
    held-out windows and their threshold as a multiple of the model's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_windows: int
    limit: int
    assets: int
    qualified: int
    own: int
    thresholds: dict[str, dict[str, float]] = {}


def asset_thresholds(
    scores: Mapping[str, npt.NDArray[np.float64]],
    model: Threshold,
    method: MethodChoice,
    min_windows: int,
    limit: int,
) -> tuple[dict[str, Threshold], AssetChoice]:
    """Each asset's own threshold where it has enough held-out scores (`scores` by asset id),
    calibrated like `model` (its rate and margin); none for a fleet of one asset, whose
    scores made the model's."""
    qualified = {
        asset: values for asset, values in scores.items() if len(values) >= max(min_windows, 1)
    }
    own: dict[str, Threshold] = {}
    if len(scores) > 1 and limit > 0:
        for asset, values in qualified.items():
            own[asset] = calibrate(values, model.target_fpr, method).widened(model.margin)
        base = max(model.value, 1e-300)
        distance = {a: abs(math.log(max(t.value, 1e-300) / base)) for a, t in own.items()}
        kept = sorted(own, key=lambda a: (-distance[a], a))[:limit]
        own = {asset: own[asset] for asset in sorted(kept)}
    listed = {
        asset: {"threshold": t.value, "windows": len(scores[asset]),
                "times_model": t.value / max(model.value, 1e-300)}
        for asset, t in own.items()
    }  # fmt: skip
    choice = AssetChoice(
        min_windows=min_windows,
        limit=limit,
        assets=len(scores),
        qualified=len(qualified),
        own=len(own),
        thresholds=listed,
    )
    return own, choice


class SpreadCheck(BaseModel):
    """How far the held-out scores lie beyond the fit part's (the training report's
    `calibration_check`); `beyond` names the features furthest beyond their training range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fit_score_p99: float
    holdout_score_p99: float
    ratio: float
    limit: float = SPREAD_LIMIT
    beyond: tuple[str, ...] = ()

    @property
    def exceeded(self) -> bool:
        return self.ratio > self.limit

    def message(self) -> str:
        return (
            f"the held-out scores lie {self.ratio:.3g} times beyond the fit part's (99th "
            f"percentile {self.holdout_score_p99:.4g} against {self.fit_score_p99:.4g}): the "
            "threshold is extrapolated from data the model never saw and may be far too high. "
            f"Furthest beyond their training range: {', '.join(self.beyond) or 'none'}. Train "
            "on a longer or more varied period, or exclude a sensor that only steps "
            "(TRAINING_DATA__EXCLUDE)."
        )


def spread_check(
    fit_scores: npt.ArrayLike,
    held_scores: npt.ArrayLike,
    fit_scaled: npt.NDArray[np.floating],
    held_scaled: npt.NDArray[np.floating],
    features: tuple[str, ...],
) -> SpreadCheck:
    """Compare the held-out scores with the fit part's; name (at most three) features whose
    largest scaled value in the held-out rows is more than twice the fit part's."""
    fit_p99 = float(np.quantile(np.asarray(fit_scores, dtype=np.float64), 0.99))
    held_p99 = float(np.quantile(np.asarray(held_scores, dtype=np.float64), 0.99))
    ratio = held_p99 / max(fit_p99, 1e-12)
    fit_max = np.abs(fit_scaled).max(axis=0)
    held_max = np.abs(held_scaled).max(axis=0)
    excess = held_max / np.maximum(fit_max, 1e-12)
    order = [int(i) for i in np.argsort(-excess) if excess[i] > 2.0][:3]
    return SpreadCheck(
        fit_score_p99=fit_p99,
        holdout_score_p99=held_p99,
        ratio=ratio,
        beyond=tuple(features[i] for i in order),
    )


def _fit_gpd_pwm(excesses: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto distribution by probability-weighted moments.

    Hosking & Wallis (1987): closed form, no optimiser, robust on few peaks. Returns the
    shape xi (> 0 heavy tail, < 0 bounded) and the scale sigma > 0.
    """
    x = np.sort(excesses)
    m = len(x)
    a0 = float(x.mean())
    a1 = float(np.sum(x * (m - 1 - np.arange(m)) / (m - 1)) / m)
    denominator = a0 - 2.0 * a1
    if a0 <= 0 or denominator <= 0:
        # All peaks equal (a degenerate tail): an exponential tail with a tiny scale.
        return 0.0, max(a0, 1e-12)
    k = a0 / denominator - 2.0
    sigma = 2.0 * a0 * a1 / denominator
    return -k, max(sigma, 1e-12)


def _validated(scores: npt.ArrayLike, target_fpr: float) -> npt.NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if not 0.0 < target_fpr < 1.0:
        raise CalibrationError(f"target false-positive rate must be in (0, 1), got {target_fpr}")
    if values.size == 0:
        raise CalibrationError("no calibration scores: the held-out part is empty")
    if not np.all(np.isfinite(values)):
        raise CalibrationError("calibration scores contain NaN or infinity")
    return values
