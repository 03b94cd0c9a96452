"""The training report written beside the artifact: report.json and report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from anomaly.model.artifact import Manifest
from training.fit import Epoch

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


def write_report(
    directory: Path,
    manifest: Manifest,
    history: tuple[Epoch, ...],
    holdout_scores: npt.NDArray[np.float64],
    settings: dict[str, Any],
    duration_s: float,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the JSON summary and the PNG (loss curves, held-out score histogram)."""
    summary = {
        "model_version": manifest.model_version,
        "created_at": manifest.created_at.isoformat(),
        "duration_s": round(duration_s, 3),
        "features": list(manifest.features),
        "architecture": manifest.architecture.model_dump(mode="json"),
        "threshold": manifest.threshold.model_dump(mode="json"),
        "training": manifest.training.model_dump(mode="json"),
        "validation": manifest.validation.model_dump(mode="json"),
        "settings": settings,
        **(extra or {}),
        "history": [
            {"epoch": e.epoch, "fit_loss": e.fit_loss, "holdout_loss": e.holdout_loss}
            for e in history
        ],
    }
    (directory / REPORT_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _plot(directory / REPORT_PNG, manifest, history, holdout_scores)


def _plot(
    path: Path,
    manifest: Manifest,
    history: tuple[Epoch, ...],
    holdout_scores: npt.NDArray[np.float64],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (losses, hist) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    epochs = [e.epoch for e in history]
    losses.plot(epochs, [e.fit_loss for e in history], label="fit")
    losses.plot(epochs, [e.holdout_loss for e in history], label="held-out")
    losses.axvline(manifest.validation.best_epoch, color="grey", linestyle=":", label="best")
    losses.set(xlabel="epoch", ylabel="mean squared error (scaled)", yscale="log")
    losses.set_title("loss per epoch")
    losses.legend()

    threshold = manifest.threshold
    positive = holdout_scores[holdout_scores > 0]
    low = float(min(positive.min(), threshold.value)) if positive.size else 1e-6
    high = float(max(holdout_scores.max(), threshold.value)) * 1.05
    bins = np.geomspace(max(low, 1e-12), max(high, low * 10), 60)
    hist.hist(np.clip(holdout_scores, bins[0], None), bins=bins, color="tab:blue")
    hist.axvline(threshold.value, color="tab:red", label=f"threshold {threshold.value:.4g}")
    hist.set(xscale="log", yscale="log", xlabel="score", ylabel="held-out windows")
    hist.set_title(
        f"held-out scores\n{threshold.method} threshold, target FPR {threshold.target_fpr:g}, "
        f"held-out FPR {manifest.validation.holdout_fpr:.3g}"
    )
    hist.legend()
    fig.suptitle(f"model {manifest.model_version}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
