"""Model hot reload: between batches, follow each model's pointer to a new version.

A new version is loaded and validated before it replaces the one in service; one that fails
is refused, logged and counted once, and the previous version keeps serving. With named
models (`ModelWatchers`) each model reloads on its own; the worker serves the models named
in its settings, or every model the store holds, looked for again at each interval.

A store that cannot be read (an S3 endpoint down, a server error; a directory store's
filesystem error such as ESTALE or EIO from NFS, or its directory gone under the worker) is
not a refused model: the model in service keeps scoring, the condition is logged once (and
once more when the store answers again), each failed look is counted
(anomaly_model_store_errors_total), and readiness says so only while no model was ever loaded
(`unavailable`). The process never ends for it: the storage turns every filesystem error
into StoreUnavailableError (anomaly/model/storage.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from anomaly.model import Artifact, ArtifactError, ModelStore, model_names, model_store
from anomaly.model.storage import StoreUnavailableError
from anomaly.settings import DEFAULT_MODEL
from worker.metrics import Metrics

log = logging.getLogger(__name__)


class ModelWatcher:
    """Checks the store at most every `interval_s` and hands back a newly loaded version."""

    def __init__(
        self,
        store: ModelStore,
        interval_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        name: str = DEFAULT_MODEL,
    ) -> None:
        self.store, self.interval_s, self.metrics, self.clock = store, interval_s, metrics, clock
        self.name = name
        metrics.watch_model(name)
        self.current: Artifact | None = None
        self.unavailable: str | None = None  # why the store could not be read, until it can
        self._refused: str | None = None
        self._next_check = clock()
        self._said_waiting = False

    def poll(self) -> Artifact | None:
        """A newly loaded model to swap in, or None (not due, unchanged, absent or refused)."""
        now = self.clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        try:
            version = self.store.current_version()
        except ArtifactError as exc:  # the pointer cannot be read: no version to refuse
            self._unreachable(exc)
            return None
        if version is None:
            if not self._said_waiting:
                log.warning("waiting for a model: the store %s has none yet", self.store.location)
                self._said_waiting = True
            self._reachable()
            return None
        if version in {self._refused, self.current.version if self.current else None}:
            self._reachable()
            return None
        try:
            artifact = self.store.load(version)
        except StoreUnavailableError as exc:
            self._unreachable(exc)
            return None
        except ArtifactError as exc:
            self._reachable()
            self._refused = version
            self.metrics.model_load_failures.labels(self.name).inc()
            serving = self.current.version if self.current else "none"
            log.error(
                "refused model %s version %s (still serving %s): %s",
                self.name, version, serving, exc,
            )  # fmt: skip
            return None
        self._reachable()
        log.info(
            "loaded model %s version %s (threshold %.6g, window %d, %d features)",
            self.name, version, artifact.threshold.value, artifact.manifest.window,
            len(artifact.manifest.features),
        )  # fmt: skip
        self.current = artifact
        manifest = artifact.manifest
        self.metrics.set_model(
            self.name, version, artifact.threshold.value, manifest.created_at.timestamp(),
            manifest.features, manifest.threshold.target_fpr,
        )  # fmt: skip
        return artifact

    def _unreachable(self, exc: ArtifactError) -> None:
        self.metrics.model_store_errors.labels(self.name).inc()
        if self.unavailable is None:
            serving = self.current.version if self.current else "none"
            log.error(
                "model store cannot be read (model %s, still serving %s; looking again every "
                "%g s, counted in anomaly_model_store_errors_total): %s",
                self.name, serving, self.interval_s, exc,
            )  # fmt: skip
        self.unavailable = str(exc)

    def _reachable(self) -> None:
        if self.unavailable is not None:
            log.info("model store %s reachable again (model %s)", self.store.location, self.name)
            self.unavailable = None


class ModelWatchers:
    """One `ModelWatcher` per named model under the store root `root`: those in `names`, or
    (empty) every model the store holds, looked for again every `interval_s`."""

    def __init__(
        self,
        root: str | Path,
        names: Sequence[str],
        interval_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.names, self.interval_s = root, tuple(names), interval_s
        self.metrics, self.clock = metrics, clock
        self.watchers: dict[str, ModelWatcher] = {}
        self._next_scan = clock()
        self._scan_failed: str | None = None

    def poll(self) -> list[tuple[str, Artifact]]:
        """The models with a newly loaded version to swap in: (name, artifact)."""
        now = self.clock()
        if now >= self._next_scan:
            self._next_scan = now + self.interval_s
            try:
                found = self.names or model_names(self.root) or (DEFAULT_MODEL,)
                self._scan_failed = None
            except ArtifactError as exc:  # looked for again at the next interval
                if self._scan_failed is None:
                    log.error("model store cannot be read, models not listed: %s", exc)
                self._scan_failed = str(exc)
                found = tuple(self.watchers)
            for name in found:
                if name not in self.watchers:
                    store = model_store(self.root, name)
                    self.watchers[name] = ModelWatcher(
                        store, self.interval_s, self.metrics, self.clock, name
                    )
        loaded = []
        for name, watcher in self.watchers.items():
            artifact = watcher.poll()
            if artifact is not None:
                loaded.append((name, artifact))
        return loaded

    @property
    def all_loaded(self) -> bool:
        """Every model named in the settings has a version in service (with none named: at
        least one model)."""
        loaded = {name for name, w in self.watchers.items() if w.current is not None}
        return set(self.names) <= loaded if self.names else bool(loaded)

    @property
    def unavailable(self) -> str | None:
        """Why the store cannot be read now (None: it can, or was not looked at yet)."""
        problems = [w.unavailable for w in self.watchers.values() if w.unavailable]
        return self._scan_failed or (problems[0] if problems else None)
