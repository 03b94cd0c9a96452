"""`anomaly-worker` (also `python -m worker`).

    anomaly-worker check-model    load the store's current model exactly as the worker
                                  serves it, print what it is, exit 0 (or 4 if refused)

The store is WORKER_STORE__PATH (default ./model-store).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from enum import IntEnum

from pydantic import ValidationError

from worker.model import ArtifactError, ModelStore
from worker.settings import WorkerSettings, env_name

log = logging.getLogger("worker")


class ExitCode(IntEnum):
    """Process exit codes; each names the class of failure."""

    OK = 0
    BAD_SETTINGS = 2
    MODEL_REFUSED = 4


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="anomaly-worker", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check-model", help="load and describe the current model")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        for err in exc.errors():
            log.error("bad setting: %s: %s (got %r)", env_name(err["loc"]), err["msg"],
                      err.get("input"))  # fmt: skip
        return ExitCode.BAD_SETTINGS
    store = ModelStore(settings.store.path)
    try:
        artifact = store.load_current()
    except ArtifactError as exc:
        log.error("model refused: %s", exc)
        return ExitCode.MODEL_REFUSED
    m = artifact.manifest
    print(
        f"model {m.model_version} from {store.root}: {len(m.features)} features "
        f"({', '.join(m.features)}), window {m.window}, threshold {m.threshold.value:.6g} "
        f"({m.threshold.method}, target FPR {m.threshold.target_fpr:g}), "
        f"trained {m.created_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
