"""`anomaly-review` (also `python -m review`): the review page.

    anomaly-review [run]    follow the alerts and feedback topics, serve the page; until SIGTERM

Settings come from REVIEW_* environment variables (the README's configuration table).
Exit codes: 0 stopped; 2 bad setting.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError

from anomaly.settings import shown_input
from review.settings import ReviewSettings, env_name

log = logging.getLogger("review")
BAD_SETTINGS = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomaly-review", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="serve the page (the default)")
    parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    try:
        settings = ReviewSettings()
    except ValidationError as exc:
        for err in exc.errors():
            log.error("bad setting: %s: %s (got %r)", env_name(err["loc"]), err["msg"],
                      shown_input(err["loc"], err.get("input")))  # fmt: skip
        return BAD_SETTINGS
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    return _run(settings)


def _run(settings: ReviewSettings) -> int:
    import matplotlib
    from waitress import create_server

    from review.episodes import EpisodeIndex
    from review.follow import Follower
    from review.web import make_app

    matplotlib.use("Agg")  # drawn on the server, before the first page asks
    index = EpisodeIndex(settings.max_episodes)
    follower = Follower(settings, index)
    follower.start()
    app = make_app(settings, index, follower)
    app.extensions["figures"].warm()
    http = settings.http
    server = create_server(app, host=http.host, port=http.port, threads=http.threads,
                           ident="anomaly-review")  # fmt: skip
    log.info("review page at http://%s:%s/ (alerts %s, verdicts %s)", http.host,
             server.effective_port, settings.topics.alerts, settings.topics.feedback)  # fmt: skip

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.close()
        follower.stop()
    log.info("stopped")
    return 0
