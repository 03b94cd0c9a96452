"""The review page's routes (Flask): the list of episodes, one page per episode with its
figure and events, and the verdict form. Every request but the probes comes through the
identity proxy (review/access.py); only judges see and may post the form."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from anomaly.model import ArtifactError
from review.access import FormKeys, RefusedError, identify
from review.episodes import JUDGED, STATES, EpisodeIndex, Query
from review.figures import Figures
from review.follow import Follower
from review.settings import ReviewSettings
from training.episode import EpisodeError
from training.judgement import VERDICTS, record_verdict
from training.kafka_range import KafkaUnavailableError

log = logging.getLogger(__name__)
PROBES = ("/livez", "/readyz")
NOTE_MAX = 2000
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def make_app(
    settings: ReviewSettings, index: EpisodeIndex, follower: Follower | None = None
) -> Flask:
    app = Flask(__name__)
    keys = FormKeys(
        settings.auth.form_key.get_secret_value().encode() if settings.auth.form_key else None
    )
    figures = Figures(settings)
    app.extensions["figures"] = figures  # review.cli warms it before serving

    @app.before_request
    def _who() -> Any:
        if request.path in PROBES:
            return None
        try:
            g.who = identify(settings.auth, request.remote_addr, request.headers.get)
        except RefusedError as refused:
            log.warning("refused %s %s from %s: %s", request.method, request.path,
                        request.remote_addr, refused.reason)  # fmt: skip
            return render_template("refused.html", reason=refused.reason), refused.status
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/livez")
    def livez() -> tuple[str, int]:
        return ("ok", 200) if follower is None or follower.alive() else ("follower stopped", 500)

    @app.get("/readyz")
    def readyz() -> tuple[str, int]:
        if follower is None or follower.ready.is_set():
            return "ready", 200
        return f"not ready: {follower.problem or 'reading the topics'}", 503

    @app.get("/")
    def episodes() -> str:
        args = request.args
        query = Query(args.get("asset", ""), args.get("model", ""), _one_of(args.get("state"),
                      STATES), _one_of(args.get("verdict"), JUDGED))  # fmt: skip
        return render_template("list.html", entries=index.select(query), query=query,
                               models=index.models(), states=STATES, judged=JUDGED,
                               size=index.incident_size)  # fmt: skip

    @app.get("/assets/<asset_id>")
    def asset(asset_id: str) -> BaseResponse:
        entry = index.latest(asset_id)
        if entry is None:
            return redirect(url_for("episodes", asset=asset_id))
        return redirect(url_for("episode", episode_id=entry.episode_id))

    @app.get("/episodes/<path:episode_id>")
    def episode(episode_id: str) -> str:
        entry = index.get(episode_id) or abort(404)
        return render_template("episode.html", entry=entry, verdicts=VERDICTS,
                               token=keys.token(g.who.user),
                               size=index.incident_size(entry.incident))  # fmt: skip

    @app.get("/episodes/<path:episode_id>/figure.png")
    def figure(episode_id: str) -> Response:
        entry = index.get(episode_id) or abort(404)
        try:
            png = figures.png(entry)
        except (EpisodeError, ArtifactError, KafkaUnavailableError) as exc:
            log.warning("no figure for %s: %s", episode_id, exc)
            return Response(str(exc), status=503, mimetype="text/plain")
        return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=30"})

    @app.post("/episodes/<path:episode_id>/verdict")
    def verdict(episode_id: str) -> BaseResponse | tuple[str, int]:
        who = g.who
        if not who.judge:
            return render_template("refused.html", reason=f"{who.user} may read, not judge "
                                   f"(group {settings.auth.judge_group})"), 403  # fmt: skip
        if not keys.valid(who.user, request.form.get("token", "")):
            return render_template("refused.html", reason="the form's token is missing or "
                                   "stale: open the episode again"), 403  # fmt: skip
        entry = index.get(episode_id) or abort(404)
        given = request.form.get("verdict", "")
        if given not in VERDICTS:
            abort(400)
        note = request.form.get("note", "").strip()[:NOTE_MAX] or None
        try:
            message = record_verdict(settings, episode_id, given, note, who.user, entry.known())
        except (EpisodeError, KafkaUnavailableError) as exc:
            log.error("verdict on %s by %s not recorded: %s", episode_id, who.user, exc)
            return render_template("refused.html", reason=f"not recorded: {exc}"), 503
        index.verdict(message)
        log.info("verdict on %s by %s: %s", episode_id, who.user, given)
        return redirect(url_for("episode", episode_id=episode_id), code=303)

    return app


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else ""
