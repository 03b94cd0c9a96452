"""Model hot reload: between batches, follow each model's pointer to a new version.

A new version is loaded and validated before it replaces the one in service; one that fails
is refused, logged and counted once, and the previous version keeps serving. With named
models (`ModelWatchers`) each model reloads on its own; the worker serves the models named
in its settings, or every model the store holds, looked for again at each interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from anomaly.model import Artifact, ArtifactError, ModelStore, model_names, model_store
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
        self._refused: str | None = None
        self._next_check = clock()
        self._said_waiting = False

    def poll(self) -> Artifact | None:
        """A newly loaded model to swap in, or None (not due, unchanged, absent or refused)."""
        now = self.clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        version = self.store.current_version()
        if version is None:
            if not self._said_waiting:
                log.warning("waiting for a model: the store %s has none yet", self.store.root)
                self._said_waiting = True
            return None
        if version in {self._refused, self.current.version if self.current else None}:
            return None
        try:
            artifact = self.store.load(version)
        except ArtifactError as exc:
            self._refused = version
            self.metrics.model_load_failures.labels(self.name).inc()
            serving = self.current.version if self.current else "none"
            log.error(
                "refused model %s version %s (still serving %s): %s",
                self.name, version, serving, exc,
            )  # fmt: skip
            return None
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


class ModelWatchers:
    """One `ModelWatcher` per named model under the store root `root`: those in `names`, or
    (empty) every model the store holds, looked for again every `interval_s`."""

    def __init__(
        self,
        root: Path,
        names: Sequence[str],
        interval_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.names, self.interval_s = Path(root), tuple(names), interval_s
        self.metrics, self.clock = metrics, clock
        self.watchers: dict[str, ModelWatcher] = {}
        self._next_scan = clock()

    def poll(self) -> list[tuple[str, Artifact]]:
        """The models with a newly loaded version to swap in: (name, artifact)."""
        now = self.clock()
        if now >= self._next_scan:
            self._next_scan = now + self.interval_s
            for name in self.names or model_names(self.root) or (DEFAULT_MODEL,):
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
