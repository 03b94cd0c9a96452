"""Progress of the epochs: a live bar on a terminal, one log line per epoch elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from training.fit import Epoch

log = logging.getLogger(__name__)

_BAR_WIDTH = 24


class EpochProgress:
    """Shows each epoch's losses; on a TTY as a bar redrawn in place, else as log lines."""

    def __init__(self, max_epochs: int, stream: TextIO | None = None) -> None:
        self.max_epochs = max_epochs
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.closed = False

    def __call__(self, epoch: Epoch, improved: bool) -> None:
        mark = " *" if improved else ""
        text = (
            f"epoch {epoch.epoch}/{self.max_epochs}  fit loss {epoch.fit_loss:.5f}  "
            f"held-out loss {epoch.holdout_loss:.5f}{mark}  "
            f"{time.monotonic() - self.started:.1f}s"
        )
        if not self.live:
            log.info("%s", text)
            return
        done = round(_BAR_WIDTH * epoch.epoch / self.max_epochs)
        bar = "#" * done + "." * (_BAR_WIDTH - done)
        self.stream.write(f"\r[{bar}] {text}\x1b[K")
        self.stream.flush()

    def restart(self) -> None:
        """A new fit begins (a first run fits twice)."""
        self.started = time.monotonic()
        self.closed = False

    def close(self) -> None:
        """End the live line (early stopping may leave the bar short of full)."""
        if self.live and not self.closed:
            self.closed = True
            self.stream.write("\n")
            self.stream.flush()
