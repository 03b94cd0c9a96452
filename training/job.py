"""One training run: read, clean, split, fit, calibrate, gate, publish, prune, push metrics.

Nothing is published unless every step succeeded: the artifact, its report and the gate's
decision are written to the store's staging area and renamed into place at the end. A
candidate the gate rejects is published too, as rejected, without becoming current.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from anomaly.instruments import SensorProfile
from anomaly.model import (
    FORMAT_VERSION,
    ArchitectureConfig,
    ArtifactError,
    Detector,
    Drift,
    Manifest,
    ModelStore,
    RobustScaler,
    ScalerParams,
    TrainingSummary,
    ValidationFigures,
    calibrate,
    default_latent,
    model_store,
    write_artifact,
)
from anomaly.model.calibration import (
    MIN_EXP_SCORES,
    AssetChoice,
    SpreadCheck,
    asset_thresholds,
    exceed,
    spread_check,
)
from anomaly.model.features import FloatArray
from anomaly.model.storage import StoreUnavailableError
from anomaly.model.store import DECISION
from anomaly.scoring import series_errors, series_scores
from anomaly.states import (
    OperatingStates,
    StateRuleError,
    longest_start_up,
    measure_grace,
    not_running,
    parse_rule,
    restarts,
    settling,
)
from training.calendar import excluded_rows, read_calendar
from training.data import DataError, Masks, SensorHistory, read_history
from training.fit import FitResult, WindowIndex, fit_autoencoder
from training.gate import Decision, Scored, decide
from training.graph import rebuild, saved_weights, to_graph
from training.hygiene import count, flagged_by, inside_episodes, sensor_faulted, union
from training.metrics import RunFigures, push
from training.progress import EpochProgress
from training.report import write_report
from training.settings import TrainingSettings
from training.topic import Recorded, by_asset, read_episodes, read_topic
from training.verdicts import Verdict, bound, described, inside, judge, mean_ack_s, read_verdicts

log = logging.getLogger(__name__)

# A gate slice of its own needs this many windows; a shorter history gates on the
# calibration part (as with TRAINING_GATE__FRACTION=0) rather than starve calibration.
MIN_GATE_WINDOWS = 100
# The hygiene rules, each a series of anomaly_training_rows_removed{rule}.
HYGIENE_RULES = ("service_model", "alert_episodes", "sensor_faults", "first_fit", "confirmed")


@dataclass(frozen=True)
class TrainingOutcome:
    """The published version (current only if promoted), and what the run did."""

    version: str
    manifest: Manifest
    location: str  # the version's directory, or its prefix in a bucket
    decision: Decision
    removed: dict[str, int]
    rows_read: int
    invalid: dict[str, int]
    pruned: list[str]


@dataclass
class _Read:
    history: SensorHistory
    read: int
    invalid: Counter[str] = field(default_factory=Counter)
    out_of_range: int = 0
    recorded: dict[str, Recorded] = field(default_factory=dict)  # alert episodes, by id
    other_models: int = 0
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # engineers', spans bounded
    maintenance: int = 0  # records left out: maintenance windows that exclude them
    states: OperatingStates | None = None  # the model's operating-state rule, its grace
    not_running: int = 0  # records left out: stopped, or starting up after a stop
    # each restart in the data (asset, times, rows from the restart to the next stop): the
    # fitted model measures the grace on them (`_graced`)
    restarts: list[tuple[str, FloatArray, FloatArray]] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    scored: Scored
    result: FitResult
    architecture: ArchitectureConfig
    scores: np.ndarray
    fit: SensorHistory
    calibration: SensorHistory
    fit_windows: int
    calibration_windows: int
    spread: SpreadCheck
    assets: AssetChoice
    limits: np.ndarray  # the threshold each held-out score is compared with (its asset's)


def train(
    settings: TrainingSettings, progress: EpochProgress | None = None, now: datetime | None = None
) -> TrainingOutcome:
    """Run the job once; push its metrics whatever happens.

    Raises DataError (unusable data), CalibrationError (the held-out part cannot support the
    target rate), ArtifactError (the store refused the result) or a KafkaError.
    """
    started = time.monotonic()
    figures = RunFigures()
    try:
        outcome = _train(settings, progress, now or datetime.now(UTC), figures)
        figures.succeeded = True
        return outcome
    finally:
        figures.duration_s = time.monotonic() - started
        push(settings.pushgateway, figures)


def _train(
    settings: TrainingSettings, progress: EpochProgress | None, now: datetime, figures: RunFigures
) -> TrainingOutcome:
    """The recipe: read, clean, split, fit (and calibrate), refit on a first run, gate,
    publish. Each step is a function of small values below."""
    started = time.monotonic()
    store = model_store(settings.store.path, settings.store.model)
    seen = store.current_version()  # publishing replaces only this (another run may race)
    service = _service_model(store, seen)
    read = _states(settings, _read(settings, service, now))
    figures.rows_read = read.read
    figures.verdicts = dict(Counter(v.verdict for v in read.verdicts.values()))
    figures.episodes = len(read.recorded)
    figures.ack_s = mean_ack_s(read.verdicts, read.recorded)
    cleaning = _clean(settings, service, read)
    split = _split(settings, read.history)
    candidate = _fit(settings, read.history.features, *split.parts(cleaning.drop), progress)
    if settings.clean.enabled and service is None:
        candidate, cleaning = _first_run_refit(settings, split, candidate, cleaning, progress)
    read = _graced(settings, read, candidate.scored)
    figures.rows_removed = cleaning.removed() | {
        "maintenance": read.maintenance,
        "not_running": read.not_running,
    }
    figures.rows_used = candidate.fit.rows
    decision, flagged = _gate(settings, split, cleaning, candidate, service, read.verdicts)
    verdicts = described(read.verdicts, read.history, flagged, settings.clean.enabled)
    return _publish(
        settings, store, seen, read, cleaning, candidate, decision, figures, started, verdicts
    )


@dataclass(frozen=True)
class _Cleaning:
    """The rows each hygiene rule marks, and those dropped before fitting (None: hygiene off,
    nothing is dropped)."""

    marks: dict[str, Masks]
    excluded: Masks
    enabled: bool
    kept: Masks | None = None  # inside episodes judged false alarms: normal, never dropped

    @property
    def drop(self) -> Masks | None:
        return self.excluded if self.enabled else None

    @property
    def counts(self) -> dict[str, int]:
        """Rows marked by each rule that applied."""
        return {rule: count(mask) for rule, mask in self.marks.items()}

    def removed(self) -> dict[str, int]:
        """Rows marked by each rule; every rule, 0 where it marked none or did not apply (so
        that a rule that applied before keeps no stale count on the Pushgateway)."""
        return dict.fromkeys(HYGIENE_RULES, 0) | self.counts

    def with_first_fit(self, marked: Masks, excluded: Masks | None = None) -> _Cleaning:
        """The same, with the first fit's marks (and, if it is refitted, what it drops)."""
        marks = {**self.marks, "first_fit": marked}
        dropped = self.excluded if excluded is None else _keep(excluded, self.kept)
        return _Cleaning(marks, dropped, self.enabled, self.kept)

    @property
    def total(self) -> int:
        return count(self.excluded) if self.enabled else 0

    @property
    def kept_marked(self) -> int:
        """Rows a rule marks that false-alarm verdicts keep (0 while hygiene is off)."""
        if self.kept is None or not self.enabled:
            return 0
        marked = union(*self.marks.values())
        return int(sum(int((marked[i] & self.kept[i]).sum()) for i in marked if i in self.kept))


def _clean(settings: TrainingSettings, service: Scored | None, read: _Read) -> _Cleaning:
    """Mark the rows the service model flags (by its own rules) and recorded episodes cover."""
    history = read.history
    marks: dict[str, Masks] = {}
    if service is not None and service.features == history.features:
        marks["service_model"] = flagged_by(service, history)
    elif service is not None:
        log.warning("the service model has other features: its flags cannot clean this data")
    if read.recorded:
        marks["alert_episodes"] = inside_episodes(history, by_asset(read.recorded))
    profile = service.instruments if service is not None else None
    if profile is not None and profile.features == history.features:
        marks["sensor_faults"] = sensor_faulted(profile, history)
    kept = None
    if read.verdicts:
        marks["confirmed"] = inside(history, read.verdicts, "confirmed")
        kept = inside(history, read.verdicts, "false_alarm")
        log.info("verdicts: %d records inside episodes judged false alarms are kept as normal",
                 count(kept))  # fmt: skip
    return _Cleaning(marks, _keep(union(*marks.values()), kept), settings.clean.enabled, kept)


def _keep(excluded: Masks, kept: Masks | None) -> Masks:
    """What `excluded` marks, but for the rows `kept` marks."""
    if kept is None:
        return excluded
    return {i: mask & ~kept[i] if i in kept else mask for i, mask in excluded.items()}


@dataclass(frozen=True)
class _Split:
    """Time cuts: fit before `hold_cut`, calibrate from it to `gate_cut`, gate after it
    (`gate_cut` infinite: the gate checks the calibration part)."""

    history: SensorHistory
    hold_cut: float
    gate_cut: float

    def parts(self, drop: Masks | None) -> tuple[SensorHistory, SensorHistory]:
        return (
            self.history.between(-math.inf, self.hold_cut, drop),
            self.history.between(self.hold_cut, self.gate_cut, drop),
        )

    @property
    def own_gate_slice(self) -> bool:
        return not math.isinf(self.gate_cut)


def _split(settings: TrainingSettings, history: SensorHistory) -> _Split:
    """The latest rows are held out; the latest of those, a share of their own, for the gate."""
    hold_cut = history.cutoff(settings.data.holdout_fraction)
    fraction = settings.gate.fraction
    if not fraction:
        return _Split(history, hold_cut, math.inf)
    gate_cut = history.cutoff(settings.data.holdout_fraction * fraction)
    if _windows(history.between(gate_cut, math.inf), settings.model.window) < MIN_GATE_WINDOWS:
        log.info(
            "short history: a gate slice of its own would hold fewer than %d windows; the "
            "gate checks the calibration part instead", MIN_GATE_WINDOWS,
        )  # fmt: skip
        return _Split(history, hold_cut, math.inf)
    return _Split(history, hold_cut, gate_cut)


def _first_run_refit(
    settings: TrainingSettings,
    split: _Split,
    candidate: _Candidate,
    cleaning: _Cleaning,
    progress: EpochProgress | None,
) -> tuple[_Candidate, _Cleaning]:
    """No model in service to clean with: the first fit flags what it can, and the model is
    fitted again without those rows, unless too little would be left to calibrate."""
    first = flagged_by(candidate.scored, split.history)
    if not count(first):
        return candidate, cleaning.with_first_fit(first)
    cleaned = union(cleaning.excluded, first)
    fit_part, held_part = split.parts(cleaned)
    window = settings.model.window
    held_windows = _windows(held_part, window)
    if held_windows < MIN_EXP_SCORES or not _windows(fit_part, window):
        log.info(
            "first run: the first fit flags %d records, but the held-out part would "
            "keep %d windows without them (fewer than %d): keeping the first fit",
            count(first), held_windows, MIN_EXP_SCORES,
        )  # fmt: skip
        none = {i: np.zeros_like(mask) for i, mask in first.items()}
        return candidate, cleaning.with_first_fit(none)
    log.info("first run: the first fit flags %d records; refitting without them", count(first))
    refitted = _fit(settings, split.history.features, fit_part, held_part, progress)
    return refitted, cleaning.with_first_fit(first, cleaned)


def _gate(
    settings: TrainingSettings,
    split: _Split,
    cleaning: _Cleaning,
    candidate: _Candidate,
    service: Scored | None,
    verdicts: dict[str, Verdict],
) -> tuple[Decision, dict[str, dict[str, int | None]]]:
    """May the candidate replace the service model? (training/gate.py, and the engineers'
    verdicts: training/verdicts.py); also each judged episode's rows flagged by each model."""
    gate_slice = (
        split.history.between(split.gate_cut, math.inf, cleaning.excluded)
        if split.own_gate_slice
        else candidate.calibration
    )
    decision = decide(candidate.scored, service, gate_slice, settings.gate, settings.data)
    flagged = judge(candidate.scored, service, split.history, verdicts, decision)
    log.info(
        "gate: %s%s", "promoted" if decision.promoted else "rejected",
        "".join(f"; {r}" for r in decision.reasons),
    )  # fmt: skip
    return decision, flagged


def _publish(
    settings: TrainingSettings,
    store: ModelStore,
    seen: str | None,
    read: _Read,
    cleaning: _Cleaning,
    candidate: _Candidate,
    decision: Decision,
    figures: RunFigures,
    started: float,
    verdicts: list[dict[str, object]],
) -> TrainingOutcome:
    """Write the artifact, its report (with the verdicts the run read, the episodes of the
    range and the mean time to a verdict) and the decision; publish (current only if
    promoted); prune."""
    history = read.history
    manifest = _manifest(candidate, history, settings, cleaning.total, read.states)
    figures.holdout_loss = manifest.validation.holdout_loss
    figures.threshold = manifest.threshold.value
    figures.promoted = decision.promoted
    figures.model_version = manifest.model_version
    record = {
        "promoted": decision.promoted,
        "reasons": decision.reasons,
        "figures": decision.figures,
        "budget": decision.budgets,  # episodes per week by asset, over the gate's records
        "decided_at": datetime.now(UTC).isoformat(),
    }
    removed = cleaning.counts
    extra = {
        "read": {"records": read.read, "invalid": dict(read.invalid),
                 "out_of_range": read.out_of_range, "other_models": read.other_models,
                 "assets": history.assets},
        "removed": {"by_rule": removed, "total": cleaning.total,
                    "kept_by_verdicts": cleaning.kept_marked,
                    "hygiene": "on" if settings.clean.enabled else "off",
                    "maintenance": read.maintenance, "not_running": read.not_running},
        "states": None if read.states is None else read.states.model_dump(),
        "episodes": figures.episodes,
        "verdicts": verdicts,
        "ack_s": round(figures.ack_s, 3),
        "decision": record,
        "calibration_check": {**candidate.spread.model_dump(mode="json"),
                              "exceeded": candidate.spread.exceeded},
        "asset_thresholds": candidate.assets.model_dump(mode="json"),
    }  # fmt: skip
    with store.staging() as staging:
        manifest = write_artifact(
            staging, manifest, saved_weights(candidate.result.network),
            candidate.scored.detector.graph.data,
        )  # fmt: skip
        (staging / DECISION).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        write_report(
            staging, manifest, candidate.result.history, candidate.scores,
            settings.model_dump(mode="json"), time.monotonic() - started, extra,
        )  # fmt: skip
        version = store.publish(staging, make_current=decision.promoted, replaces=seen)
    log.info(
        "published model %s to %s%s", version, store.location,
        " and made it current" if decision.promoted else " as rejected (not current)",
    )  # fmt: skip
    pruned = store.prune(settings.store.keep, settings.store.protect_s)
    if pruned:
        log.info("pruned %d old versions: %s", len(pruned), ", ".join(pruned))
    return TrainingOutcome(
        version, manifest, f"{store.location}/versions/{version}", decision, removed, read.read,
        dict(read.invalid), pruned,
    )  # fmt: skip


def _service_model(store: ModelStore, version: str | None) -> Scored | None:
    if version is None:
        log.info("no model in service: first run")
        return None
    try:
        artifact = store.load(version, rebuild=rebuild)  # a version without a graph: exported
    except StoreUnavailableError:
        raise  # not a refused model: a run that cannot reach the store publishes nothing
    except ArtifactError as exc:
        log.error("the current model is refused (%s): training as on a first run", exc)
        return None
    return Scored.of(artifact)


def _read(settings: TrainingSettings, service: Scored | None, now: datetime) -> _Read:
    if settings.data.source == "file":
        history = read_history(settings.data)
        return _Read(history, history.rows)
    features = settings.data.features or (service.features if service else None)
    history, summary = read_topic(settings, features or None, now)
    excluded = excluded_rows(history, read_calendar(settings))
    if excluded:  # never learnt, whether hygiene is on or not; the series split around them
        history = history.between(-math.inf, math.inf, excluded)
        log.info("maintenance windows leave out %d records", count(excluded))
    recorded = read_episodes(settings, now)
    assets, model = {s.asset_id for s in history.series}, settings.store.model
    given = read_verdicts(settings, now)
    verdicts = bound(
        {k: v for k, v in given.items() if v.asset_id in assets and v.model == model}, recorded
    )
    log.info(
        "read %d records (%d invalid, %d out of range, %d of other models) of %d assets; %d "
        "recorded episodes", summary.read, sum(summary.invalid.values()), summary.out_of_range,
        summary.other_models, history.assets, len(recorded),
    )  # fmt: skip
    for episode_id, v in verdicts.items():
        log.info("verdict %s on episode %s of %s, its span ended by %s", v.verdict, episode_id,
                 v.asset_id, v.ended_by.replace("_", " "))  # fmt: skip
    return _Read(
        history, summary.read, summary.invalid, summary.out_of_range, recorded,
        summary.other_models, verdicts, count(excluded),
    )  # fmt: skip


def _states(settings: TrainingSettings, read: _Read) -> _Read:
    """With an operating-state rule: the records stopped, and those of each start-up within
    the grace (set, or measured from the data's restarts), left out; the rule and the grace
    for the manifest."""
    when, history = settings.states.stopped_when, read.history
    if when is None:
        return read
    try:
        rule = parse_rule(when, history.features)
    except StateRuleError as exc:
        raise DataError(f"TRAINING_STATES__STOPPED_WHEN: {exc}") from None
    grace, grace_from = settings.states.grace_s, "set"
    if grace is None:  # the start-ups the values show, left out of the fit
        grace = measure_grace(rule, [(s.ts, s.values) for s in history.series]) or 0.0
        grace_from = "measured"
    drop: Masks = {}
    for i, series in enumerate(history.series):
        stop, starting = not_running(rule, series.ts, series.values, grace)
        if (stop | starting).any():
            drop[i] = stop | starting
    n = count(drop)
    log.info("operating states (%s): %d records stopped or starting up (%g s) left out", when,
             n, grace)  # fmt: skip
    states = OperatingStates(stopped_when=when, grace_s=grace, grace_from=grace_from)
    kept = history.between(-math.inf, math.inf, drop) if drop else history
    found = [(s.asset_id, *restart) for s in history.series
             for restart in restarts(rule, s.ts, s.values)]  # fmt: skip
    return replace(read, history=kept, states=states, not_running=n, restarts=found)


def _graced(settings: TrainingSettings, read: _Read, model: Scored) -> _Read:
    """The grace the workers apply after a stop, unless set: how long the fitted model takes
    to see each restart in the data as normal (its scores at or under the asset's threshold
    for SETTLED records in a row), the longest, rounded up (anomaly/states.py)."""
    states = read.states
    if states is None or settings.states.grace_s is not None:
        return read
    window, found = model.window, []
    for asset_id, ts, rows in read.restarts:
        scores = series_scores(model.detector, rows, window)
        if len(scores):
            calm = scores <= model.threshold_for(asset_id).value
            settled = settling(ts[window - 1 :], calm)
            found.append(None if settled is None else settled + float(ts[window - 1] - ts[0]))
    grace = longest_start_up(found) or 0.0
    log.info("start-up grace: %s", f"{grace:g} s, the longest the model takes to see a "
             f"restart in the data as normal ({len(found)} restarts)" if found
             else "0 s (the data holds no restart)")  # fmt: skip
    return replace(read, states=states.model_copy(update={"grace_s": grace}))


def _fit(
    settings: TrainingSettings,
    features: tuple[str, ...],
    fit_part: SensorHistory,
    calibration_part: SensorHistory,
    progress: EpochProgress | None,
) -> _Candidate:
    window = settings.model.window
    log.info(
        "fitting on %d rows, calibrating on %d rows (%d assets)",
        fit_part.rows, calibration_part.rows, fit_part.assets,
    )  # fmt: skip
    _require_windows("fit", fit_part, window)
    _require_windows("held-out", calibration_part, window)
    scaler = RobustScaler.fit(np.concatenate([s.values for s in fit_part.series]))
    fit_windows = WindowIndex([s.values for s in fit_part.series], scaler, window)
    held_windows = WindowIndex([s.values for s in calibration_part.series], scaler, window)
    kind = settings.model.kind
    architecture = ArchitectureConfig(
        kind=kind,
        n_features=len(features),
        window=window,
        hidden=settings.model.hidden,
        latent=settings.model.latent or default_latent(len(features) * window, kind, len(features)),
        kernel=settings.model.kernel if kind == "conv" else None,
    )
    if progress is not None:
        progress.restart()
    try:
        result = fit_autoencoder(
            fit_windows, held_windows, architecture, settings.model, progress or _quiet
        )
    finally:
        if progress is not None:
            progress.close()
    graph = to_graph(result.network)  # scored from here on as the worker will
    detector = Detector(scaler, graph)
    held = calibration_part.series
    held_errors = [series_errors(detector, s.values, window) for s in held]
    fit_errors = [series_errors(detector, s.values, window) for s in fit_part.series]
    parts = [e.score for e in held_errors]
    scores = np.concatenate(parts)
    spread = spread_check(
        np.concatenate([e.score for e in fit_errors]), scores,
        fit_windows.rows.numpy(), held_windows.rows.numpy(), features,
    )  # fmt: skip
    if spread.exceeded:
        log.warning("calibration: %s", spread.message())
    calibration = settings.calibration
    threshold = calibrate(scores, calibration.target_fpr, calibration.method).widened(
        calibration.margin
    )
    by_asset: dict[str, list[np.ndarray]] = {}
    for part, s in zip(parts, held, strict=True):
        by_asset.setdefault(s.asset_id, []).append(part)
    own, choice = asset_thresholds(
        {asset: np.concatenate(p) for asset, p in by_asset.items()}, threshold,
        calibration.method, calibration.asset_min_windows, calibration.asset_limit,
    )  # fmt: skip
    if own:
        log.info(
            "%d of %d assets have a threshold of their own (%d with at least %d held-out "
            "windows, at most %d)", choice.own, choice.assets, choice.qualified,
            calibration.asset_min_windows,
            calibration.asset_limit,
        )  # fmt: skip
    limits = np.concatenate([
        np.full(len(part), own.get(s.asset_id, threshold).value)
        for part, s in zip(parts, held, strict=True)
    ])  # fmt: skip
    best = result.history[result.best_epoch - 1]
    log.info(
        "fitted in %d epochs (best %d, held-out loss %.5f); threshold %.5g by %s at FPR %g",
        len(result.history), result.best_epoch, best.holdout_loss, threshold.value,
        threshold.method, threshold.target_fpr,
    )  # fmt: skip
    if calibration.drift_rate > 0:
        drift = Drift.fit(
            [e.residual for e in fit_errors], [e.residual for e in held_errors],
            calibration.drift_rate, calibration.target_fpr, calibration.method,
        )  # fmt: skip
        detector = Detector(scaler, graph, drift)
        log.info(
            "residual drift at rate %g: threshold %.4g by %s", drift.rate,
            drift.threshold.value, drift.threshold.method,
        )  # fmt: skip
    return _Candidate(
        Scored(
            detector, threshold, window, features, settings.rules.for_window(window),
            asset_thresholds=own, kind=architecture.kind,
            instruments=_instruments(settings, fit_part),
        ),
        result, architecture, scores, fit_part, calibration_part, len(fit_windows),
        len(held_windows), spread, choice, limits,
    )  # fmt: skip


def _instruments(settings: TrainingSettings, fit_part: SensorHistory) -> SensorProfile | None:
    """What the fit part shows of each sensor, for the workers to tell a broken one."""
    if not settings.instruments.enabled:
        return None
    series = [s.values for s in fit_part.series if len(s.values)]
    try:
        return SensorProfile.fit(series, fit_part.features, settings.instruments.physical)
    except ValueError as exc:  # a physical range naming no feature
        raise DataError(f"TRAINING_INSTRUMENTS__PHYSICAL: {exc}") from None


def _manifest(
    candidate: _Candidate,
    history: SensorHistory,
    settings: TrainingSettings,
    removed: int,
    states: OperatingStates | None,
) -> Manifest:
    created_at = datetime.now(UTC)
    first_ts, last_ts = history.time_range()
    scores, threshold = candidate.scores, candidate.scored.threshold
    best = candidate.result.history[candidate.result.best_epoch - 1]
    return Manifest(
        format_version=FORMAT_VERSION,
        model_version=f"{created_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        created_at=created_at,
        features=history.features,
        scaler=ScalerParams.from_scaler(candidate.scored.detector.scaler),
        architecture=candidate.architecture,
        threshold=threshold,
        training=TrainingSummary(
            source=history.source,
            rows=history.rows - removed,
            assets=history.assets,
            fit_rows=candidate.fit.rows,
            holdout_rows=candidate.calibration.rows,
            fit_windows=candidate.fit_windows,
            holdout_windows=candidate.calibration_windows,
            first_ts=first_ts,
            last_ts=last_ts,
            seed=settings.model.seed,
            cadence_s=_cadence(history),
        ),
        validation=ValidationFigures(
            fit_loss=best.fit_loss,
            holdout_loss=float(scores.mean()),
            holdout_fpr=float(exceed(scores, candidate.limits).mean()),
            holdout_score_p50=float(np.quantile(scores, 0.5)),
            holdout_score_p99=float(np.quantile(scores, 0.99)),
            holdout_score_max=float(scores.max()),
            epochs=len(candidate.result.history),
            best_epoch=candidate.result.best_epoch,
        ),
        weights_sha256="0" * 64,  # write_artifact fills in the real checksums
        graph_sha256="0" * 64,
        rules=candidate.scored.rules,
        asset_thresholds=dict(candidate.scored.asset_thresholds),
        drift=candidate.scored.detector.drift,
        states=states,
        instruments=candidate.scored.instruments,
    )


def _cadence(history: SensorHistory) -> float | None:
    """The median time between an asset's consecutive records (None without times)."""
    if not history.has_timestamps:
        return None
    gaps = [np.diff(s.ts) for s in history.series if len(s.ts) > 1]
    steps = np.concatenate(gaps) if gaps else np.empty(0)
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


def _quiet(epoch: object, improved: bool) -> None:
    """Progress for callers that want none."""


def _windows(history: SensorHistory, window: int) -> int:
    """How many windows of `window` consecutive rows of one asset the history holds."""
    return sum(max(0, len(s.ts) - window + 1) for s in history.series)


def _require_windows(part: str, history: SensorHistory, window: int) -> None:
    longest = max((len(s.ts) for s in history.series), default=0)
    if longest < window:
        raise DataError(
            f"the {part} part has no window of {window} consecutive rows of one asset "
            f"(its longest asset has {longest} rows): fewer rows than one window. Use more "
            "data, a smaller window, or another held-out fraction."
        )
