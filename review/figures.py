"""An episode's figure for its page: the one `anomaly-train report` draws (training/episode.py),
from the records around it, scored by the model version that opened it. A resolved episode's
figure is kept (it no longer changes); an open one's is drawn again as it grows."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from io import BytesIO

from anomaly.model import Artifact, model_store
from review.episodes import Entry
from review.settings import ReviewSettings
from training.episode import draw, episode_report, find_episode

KEPT_FIGURES = 64
KEPT_MODELS = 4
OPEN_REDRAW_S = 30  # an open episode's figure is drawn again at most this often


class Figures:
    def __init__(self, settings: ReviewSettings) -> None:
        self._settings = settings
        self._figures: OrderedDict[str, tuple[tuple[object, ...], bytes]] = OrderedDict()
        self._models: OrderedDict[tuple[str, str], Artifact] = OrderedDict()
        self._lock = threading.Lock()  # matplotlib draws one figure at a time

    def warm(self) -> None:
        """Draw once at start: matplotlib's first figure (its fonts) is not the first page's."""
        from matplotlib import pyplot as plt

        with self._lock:
            fig = plt.figure(figsize=(2, 1))
            fig.add_subplot().plot([0, 1], [0, 1], label="warm")
            fig.savefig(BytesIO(), format="png")
            plt.close(fig)

    def png(self, entry: Entry) -> bytes:
        """The figure; EpisodeError (or ArtifactError) when its records or model are gone."""
        drawn_at = 0 if entry.state == "resolved" else int(time.time() // OPEN_REDRAW_S)
        key = (entry.state, len(entry.events), drawn_at)
        with self._lock:
            kept = self._figures.get(entry.episode_id)
            if kept is not None and kept[0] == key:
                self._figures.move_to_end(entry.episode_id)
                return kept[1]
            found = find_episode(self._settings, entry.episode_id, entry.known())
            report = episode_report(
                self._settings, found, self._settings.margin_s, self._model(entry)
            )
            out = BytesIO()
            draw(report, out)
            self._figures[entry.episode_id] = (key, out.getvalue())
            while len(self._figures) > KEPT_FIGURES:
                self._figures.popitem(last=False)
            return out.getvalue()

    def _model(self, entry: Entry) -> Artifact:
        key = (entry.model, entry.model_version)
        artifact = self._models.get(key)
        if artifact is None:
            artifact = model_store(self._settings.store.path, entry.model).load(entry.model_version)
            self._models[key] = artifact
            while len(self._models) > KEPT_MODELS:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return artifact
