"""Model hot reload: between batches, follow the store's pointer to a new version.

A new version is loaded and validated before it replaces the one in service; one that fails
is refused, logged and counted once, and the previous model keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from anomaly.model import Artifact, ArtifactError, ModelStore
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
    ) -> None:
        self.store, self.interval_s, self.metrics, self.clock = store, interval_s, metrics, clock
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
            self.metrics.model_load_failures.inc()
            serving = self.current.version if self.current else "none"
            log.error("refused model %s (still serving %s): %s", version, serving, exc)
            return None
        log.info(
            "loaded model %s (threshold %.6g, window %d, %d features)",
            version, artifact.threshold.value, artifact.manifest.window,
            len(artifact.manifest.features),
        )  # fmt: skip
        self.current = artifact
        manifest = artifact.manifest
        self.metrics.set_model(
            version, artifact.threshold.value, manifest.created_at.timestamp(), manifest.features,
            manifest.threshold.target_fpr,
        )  # fmt: skip
        return artifact
