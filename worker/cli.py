"""`anomaly-worker` (also `python -m worker`).

    anomaly-worker [run]          consume, score, alert; until SIGTERM (exit 0 after draining)
    anomaly-worker check-model    load the store's current model as the worker would, describe
                                  it, exit 0 (or 4 if there is none or it is refused)

Settings come from WORKER_* environment variables (see the README's configuration table).
Exit codes: 0 stopped cleanly; 2 bad setting; 4 model refused; 5 publishing failed;
6 commit failed; 7 brokers unavailable, or refusing the login (SASL or TLS; the log names
the variables to check); 8 a compression codec's library is missing; 9 a batch the client
cannot read; 10 a topic missing at start; 11 an operation the brokers refuse this principal
(an ACL missing); 130 second interrupt.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from anomaly.settings import shown_input
from worker.errors import ExitCode
from worker.settings import WorkerSettings, env_name

log = logging.getLogger("worker")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="anomaly-worker", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the worker (the default)")
    commands.add_parser("check-model", help="load and describe the current model")
    command = parser.parse_args(argv).command or "run"
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        for err in exc.errors():
            log.error("bad setting: %s: %s (got %r)", env_name(err["loc"]), err["msg"],
                      shown_input(err["loc"], err.get("input")))  # fmt: skip
        return ExitCode.BAD_SETTINGS
    from worker import logs

    logs.configure(settings.log_level, settings.log_format)
    if command == "check-model":
        return _check_model(settings)
    import gc

    from anomaly.kafka import CodecUnavailableError, check_codecs
    from worker.runner import Worker

    log.info("starting with settings %s", settings.masked())
    try:
        check_codecs()
    except CodecUnavailableError as exc:
        log.error("fatal: %s", exc)
        return ExitCode.CODEC_UNAVAILABLE
    worker = Worker(settings)
    # Start-up objects (the models, the clients) never die: keep the collector from rescanning them.
    gc.freeze()
    return worker.run()


def _check_model(settings: WorkerSettings) -> int:
    """Load the current version of every model the worker would serve; refused if any is."""
    from anomaly.model import ArtifactError, model_names, model_store

    root = settings.store.path
    try:
        names = settings.models.names or model_names(root) or ["default"]
    except ArtifactError as exc:  # the store cannot be read (a filesystem error, a bucket away)
        log.error("models not listed: %s", exc)
        return ExitCode.MODEL_REFUSED
    for name in names:
        store = model_store(root, name)
        try:
            artifact = store.load_current()
        except ArtifactError as exc:
            log.error("model %s refused: %s", name, exc)
            return ExitCode.MODEL_REFUSED
        m = artifact.manifest
        print(
            f"model {name} {m.model_version} from {store.location}: {len(m.features)} features "
            f"({', '.join(m.features)}), window {m.window}, threshold {m.threshold.value:.6g} "
            f"({m.threshold.method}, target FPR {m.threshold.target_fpr:g}), "
            f"trained {m.created_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
