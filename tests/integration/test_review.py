"""The review page on a real broker (Apache Kafka 4) with a worker that raised the episodes:
the list, an episode's page and figure, a verdict given with one click that lands on the
feedback topic as `anomaly-train verdict` writes it and that the training job reads, a second
verdict that replaces the first; refusals: no proxy header, no form token, no judge role."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import create_topics
from tests.support.kafka import published_events, settings_on
from tests.support.models import Trained
from tests.support.process import cli
from tests.support.review import JUDGE, READER, Review, request, review_env, token_of
from training.kafka_range import plan_range, read_planned
from training.settings import TrainingSettings
from training.verdicts import read_verdicts
from worker.settings import WorkerSettings

CHROMIUM = shutil.which("chromium") or "chromium"  # Debian's (make system)


@dataclass
class Served:
    settings: WorkerSettings
    feedback: str
    events: list[dict[str, Any]]
    review: Review

    @property
    def opened(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "open"]

    def page(self, episode_id: str) -> str:
        return f"{self.review.url}episodes/{episode_id}"

    def verdicts(self) -> list[dict[str, Any]]:
        """Every message on the feedback topic."""
        planned = plan_range(self.settings.kafka, self.feedback, 0, None, 10**6)
        return [json.loads(r.value or b"") for r in read_planned(self.settings.kafka, planned)]


@pytest.fixture(scope="module")
def served(
    kafka4: LocalBroker, trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Four pumps, three faults; a worker scores them; the page follows its topics."""
    root = tmp_path_factory.mktemp("review")
    shutil.copytree(trained.root, root / "store")
    settings = settings_on(kafka4, root / "store")
    feedback = f"{settings.topics.alerts}.verdicts"
    create_topics(settings.kafka, {feedback: 1})
    fleet = Fleet(n_assets=4, seed=7, start=datetime.now(UTC).replace(microsecond=0)
                  - timedelta(minutes=30))  # fmt: skip
    events = published_events(settings, fleet.records(1200, fleet.faults(1200, first=300)), 120)
    review = Review(review_env(settings, feedback), root / "review.log")
    try:
        yield Served(settings, feedback, events, review)
    finally:
        assert review.stop() == 0, review.process.state()


def test_the_list_and_each_episode_page_show_what_the_worker_raised(served: Served) -> None:
    assert len(served.opened) >= 3
    status, listed, headers = request(served.review.url, JUDGE)
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    for event in served.opened:
        assert f'href="/episodes/{event["episode_id"]}"' in listed
    event = served.opened[0]
    status, page, _ = request(served.page(event["episode_id"]), JUDGE)
    assert status == 200
    assert event["asset_id"] in page
    for top in event["top_features"]:
        assert top["feature"] in page
    began = time.perf_counter()
    status, figure, headers = request(served.page(event["episode_id"]) + "/figure.png", JUDGE)
    print(f"figure of {event['episode_id']}: {time.perf_counter() - began:.2f} s")
    assert status == 200, figure
    assert headers["Content-Type"] == "image/png"
    # the link an alert carries: the asset's episode
    status, _, headers = request(f"{served.review.url}assets/{event['asset_id']}", JUDGE)
    assert status == 302
    assert headers["Location"].startswith("/episodes/")


def test_a_verdict_from_the_page_is_the_one_the_command_writes_and_the_job_reads(
    served: Served,
) -> None:
    first, second = served.opened[0], served.opened[1]
    page = served.page(first["episode_id"])
    _, shown, _ = request(page, JUDGE)
    status, _, headers = request(page + "/verdict", JUDGE, {
        "token": token_of(shown), "verdict": "false_alarm", "note": "valve test"})  # fmt: skip
    assert status == 303
    assert headers["Location"] == f"/episodes/{first['episode_id']}"
    _, shown, _ = request(page, JUDGE)
    assert "false alarm" in shown
    assert "by alice" in shown
    assert "valve test" in shown
    done = cli(served.settings, "verdict", second["episode_id"], "confirmed", "--note", "seal",
               "--by", "carol", feedback=served.feedback)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    given = {v["episode_id"]: v for v in served.verdicts()}
    from_page, from_cli = given[first["episode_id"]], given[second["episode_id"]]
    assert set(from_page) == set(from_cli)
    assert (from_page["verdict"], from_page["by"], from_page["note"]) == ("false_alarm", "alice",
                                                                         "valve test")  # fmt: skip
    for name in ("asset_id", "model", "model_version", "started_at"):
        assert from_page[name] == first[name]
    # a second verdict replaces the first, on the page and for the training job
    _, shown, _ = request(page, JUDGE)
    status, _, _ = request(page + "/verdict", JUDGE,
                           {"token": token_of(shown), "verdict": "confirmed"})  # fmt: skip
    assert status == 303
    _, shown, _ = request(page, JUDGE)
    assert "confirmed" in shown.split('id="verdict"', 1)[1].split("</p>", 1)[0]
    job = TrainingSettings(
        kafka=served.settings.kafka, data={"source": "kafka", "since": "2h"},
        topics={"input": served.settings.topics.input, "alerts": served.settings.topics.alerts,
                "feedback": served.feedback},
    )  # fmt: skip
    read_back = read_verdicts(job, datetime.now(UTC))
    assert read_back[first["episode_id"]].verdict == "confirmed"
    assert read_back[second["episode_id"]].verdict == "confirmed"


def test_refused_without_the_proxy_header_a_token_or_the_judge_role(served: Served) -> None:
    event = served.opened[-1]
    page = served.page(event["episode_id"])
    before = len(served.verdicts())
    status, body, _ = request(page, {})
    assert status == 401
    assert "named no user" in body
    _, shown, _ = request(page, JUDGE)
    forged = {"verdict": "false_alarm"}  # a form posted from another site carries no token
    assert request(page + "/verdict", JUDGE, forged)[0] == 403
    assert request(page + "/verdict", JUDGE, forged | {"token": "1.abc"})[0] == 403
    _, read_only, _ = request(page, READER)
    assert 'value="false_alarm"' not in read_only
    assert request(page + "/verdict", READER, {"token": token_of(shown),
                                               "verdict": "false_alarm"})[0] == 403  # fmt: skip
    assert len(served.verdicts()) == before


def test_in_a_browser_from_the_list_to_a_recorded_verdict_in_two_clicks(
    served: Served, tmp_path: Path
) -> None:
    """Chromium (Debian's) driven by Playwright: the list, one click to an episode (its
    figure drawn), one click to a verdict found on the feedback topic; a browser without the
    proxy's header is refused, and so is a form another site posts."""
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("REVIEW_SCREENSHOTS", tmp_path))
    event = served.opened[-1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            judge = browser.new_context(extra_http_headers=JUDGE,
                                        viewport={"width": 1200, "height": 900})  # fmt: skip
            page = judge.new_page()
            page.goto(served.review.url)
            page.screenshot(path=shots / "review-list.png")
            with page.expect_response(lambda r: r.url.endswith("/figure.png")) as figure:
                page.click(f'a[href="/episodes/{event["episode_id"]}"]')  # click 1
            assert figure.value.status == 200
            image = page.locator("figure img")
            image.wait_for()
            # (a function, not a string: the page's policy refuses eval, and so this check)
            drawn = image.evaluate("img => img.complete && img.naturalWidth")
            assert drawn > 0, "the figure was not drawn"
            page.screenshot(path=shots / "review-episode.png", full_page=True)
            page.fill("textarea[name=note]", "pump swapped")
            page.click("button.false-alarm")  # click 2
            page.wait_for_selector(".given.verdict-false_alarm")
            assert "by alice" in page.inner_text("#verdict")
            given = [v for v in served.verdicts() if v["episode_id"] == event["episode_id"]]
            assert [(v["verdict"], v["by"], v["note"]) for v in given] == [
                ("false_alarm", "alice", "pump swapped")]  # fmt: skip

            # another site's page posts the verdict form in the judge's browser: no token
            target = served.page(event["episode_id"]) + "/verdict"
            page.set_content(f'<form method="post" action="{target}">'
                             '<input name="verdict" value="confirmed"></form>')  # fmt: skip
            with page.expect_response(lambda r: r.url.endswith("/verdict")) as posted:
                page.evaluate("document.forms[0].submit()")
            assert posted.value.status == 403

            stranger = browser.new_context().new_page()  # not through the proxy
            answer = stranger.goto(served.page(event["episode_id"]))
            assert answer is not None
            assert answer.status == 401
        finally:
            browser.close()
    after = [v for v in served.verdicts() if v["episode_id"] == event["episode_id"]]
    assert len(after) == 1
