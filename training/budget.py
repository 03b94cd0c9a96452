"""The alarm budget: how many episodes a model raises per asset per week over a range of
records, replayed offline as the worker decides them (anomaly/scoring.py: windows, the judged
score, each asset's threshold, the onset rule, broken sensors; anomaly/replay.py: the alert
rules with their hold in record time).

    anomaly-train budget [--version V] --source kafka [--since 7d | --start ISO --end ISO]

reads the input topic over the range (or a file: TRAINING_DATA__*, as the job) and prints
each asset's episodes, the record time it covered and its episodes per week, and the
fleet's: "how many pages a week will this model give us", before promoting it. The gate
gives the same figures for the candidate and the model in service over the held-out range it
judged them on (report.json `decision.budget`, the decision's figures) and refuses a
candidate above TRAINING_GATE__MAX_EPISODES_PER_ASSET_WEEK. An episode here is an `open` the
worker would publish over the same records, read from the range's start (held back by a
maintenance window or grouped into an incident, it is still an episode of its asset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from anomaly.model import ArtifactError, model_store
from anomaly.replay import changes
from anomaly.scoring import score_series
from training.data import AssetSeries, SensorHistory, read_history
from training.graph import rebuild
from training.settings import TrainingSettings
from training.topic import read_topic

if TYPE_CHECKING:  # the gate reads the budget
    from training.gate import Scored

WEEK_S = 7 * 24 * 3600.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetBudget:
    """One asset's episodes over `span_s` seconds of its records."""

    asset_id: str
    episodes: int
    span_s: float

    @property
    def per_week(self) -> float:
        return self.episodes * WEEK_S / self.span_s if self.span_s > 0 else 0.0


def span_s(ts: np.ndarray) -> float:
    """The record time a series covers: first to last, and one step more (n records at 1 Hz
    cover n seconds)."""
    if len(ts) < 2:
        return 0.0
    return float(ts[-1] - ts[0] + np.median(np.diff(ts)))


def episodes(model: Scored, series: AssetSeries) -> int:
    """The episodes the worker would open over one asset's series, read from its start."""
    scored = score_series(
        model.detector, model.threshold_for(series.asset_id), series.values, model.window,
        model.rules, model.instruments,
    )  # fmt: skip
    times = [datetime.fromtimestamp(t, UTC) for t in series.ts[model.window - 1 :].tolist()]
    found = changes(scored.score, scored.above, model.rules, times, scored.onset,
                    scored.residual, scored.drift)  # fmt: skip
    return sum(1 for _, kind, _ in found if kind == "open")


def budgets(model: Scored, history: SensorHistory) -> list[AssetBudget]:
    """Each asset's episodes over its records."""
    return [AssetBudget(s.asset_id, episodes(model, s), span_s(s.ts)) for s in history.series]


def per_asset_week(found: list[AssetBudget]) -> float:
    """The fleet's episodes per asset per week: all episodes over all the asset-time covered."""
    covered = sum(b.span_s for b in found)
    return sum(b.episodes for b in found) * WEEK_S / covered if covered > 0 else 0.0


def replay(settings: TrainingSettings, version: str | None, now: datetime) -> list[AssetBudget]:
    """A stored version (None: the current one) replayed over the configured records (the
    input topic's range, or a file): each asset's budget."""
    from training.gate import Scored

    store = model_store(settings.store.path, settings.store.model)
    chosen = version or store.current_version()
    if chosen is None:
        raise ArtifactError(f"no current model in {store.location}: name a version")
    model = Scored.of(store.load(chosen, rebuild=rebuild))
    if settings.data.source == "file":
        data = settings.data.model_copy(update={"features": model.features})
        history = read_history(data)
    else:
        history, _ = read_topic(settings, model.features, now)
    log.info("replaying %s %s over %d records of %d assets", settings.store.model, chosen,
             history.rows, history.assets)  # fmt: skip
    return budgets(model, history)
