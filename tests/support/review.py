"""The review page as a user runs it: `anomaly-review` in a process of its own, on the
worker's topics and store, reached through a stand-in for the identity proxy (requests from
loopback that carry its headers)."""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.http import get
from tests.support.process import Process
from tests.support.waiting import wait_until
from worker.settings import WorkerSettings

REVIEW = Path(sys.executable).with_name("anomaly-review")
JUDGE = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "operators,anomaly-judges"}
READER = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "operators"}
LISTENING = re.compile(r"review page at (http://[0-9.]+:\d+/)")


def review_env(settings: WorkerSettings, feedback: str, **more: object) -> dict[str, str]:
    """The page's settings on the worker's broker, topics and store."""
    k, t = settings.kafka, settings.topics
    env = {
        "REVIEW_KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "REVIEW_TOPICS__INPUT": t.input,
        "REVIEW_TOPICS__ALERTS": t.alerts,
        "REVIEW_TOPICS__FEEDBACK": feedback,
        "REVIEW_STORE__PATH": str(settings.store.path),
        "REVIEW_HTTP__HOST": "127.0.0.1",
        "REVIEW_HTTP__PORT": "0",
    }
    if k.api_version:
        env["REVIEW_KAFKA__API_VERSION"] = k.api_version
    return env | {name: str(value) for name, value in more.items()}


class Review:
    """A running page: its address once it has read the topics."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.process = Process([REVIEW], env, log)
        try:
            wait_until(self._listening, 60, "the review page to listen", self.process.state)
            wait_until(lambda: get(self.url + "readyz")[0] == 200, 60,
                       "the review page to read the topics", self.process.state)  # fmt: skip
        except BaseException:  # a page that never got ready is not left running
            self.process.__exit__(None, None, None)
            raise

    def _listening(self) -> bool:
        found = LISTENING.search(self.process.log.read_text(errors="replace"))
        if found:
            self.url = found[1]
        elif self.process.popen.poll() is not None:
            raise AssertionError(f"the review page exited\n{self.process.state()}")
        return found is not None

    def stop(self) -> int:
        self.process.popen.terminate()
        return self.process.wait(30)


def request(
    url: str, headers: dict[str, str], form: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    """A GET (or a form's POST) with `headers`; status, body and headers, redirects not
    followed."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    asked = urllib.request.Request(url, data=data, headers=headers)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(asked, timeout=30) as answer:
            return answer.status, answer.read().decode(errors="replace"), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kw: object) -> None:
        return None


def token_of(page: str) -> str:
    """The form's token on an episode page."""
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "no verdict form on the page"
    return found[1]
