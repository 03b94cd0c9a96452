"""The worker as a user runs it: `anomaly-worker` in a process of its own, for the tests that
assert on its exit status and on what it says (its JSON log, kept in a file that is read while
it runs, so a full pipe can never block it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.models import REPO
from tests.support.waiting import wait_until
from worker.settings import WorkerSettings

# The console script the package installs, beside this interpreter (the venv's bin/).
WORKER = Path(sys.executable).with_name("anomaly-worker")
TRAIN = Path(sys.executable).with_name("anomaly-train")


def worker_env(settings: WorkerSettings, **more: object) -> dict[str, str]:
    """The environment that gives `anomaly-worker` the connection, topics, group, batch, store
    and probe address of `settings` (as tests/support/kafka.py builds them); `more`: other
    WORKER_* variables by name, e.g. WORKER_KAFKA__OUTAGE_TIMEOUT_S=1."""
    k, t = settings.kafka, settings.topics
    env = {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "WORKER_KAFKA__SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "WORKER_TOPICS__INPUT": t.input,
        "WORKER_TOPICS__ALERTS": t.alerts,
        "WORKER_TOPICS__DEAD_LETTERS": t.dead_letters,
        "WORKER_TOPICS__GROUP": t.group,
        "WORKER_BATCH__SIZE": str(settings.batch.size),
        "WORKER_BATCH__MAX_WAIT_MS": str(settings.batch.max_wait_ms),
        "WORKER_STORE__PATH": str(settings.store.path),
        "WORKER_STORE__RELOAD_INTERVAL_S": str(settings.store.reload_interval_s),
        "WORKER_HTTP__HOST": "127.0.0.1",
        "WORKER_HTTP__PORT": str(settings.http.port),
    }
    if k.api_version:
        env["WORKER_KAFKA__API_VERSION"] = k.api_version
    return env | {name: str(value) for name, value in more.items()}


class Process:
    """A command run with `env` added to this process's environment, its stdout and stderr in
    `log`; `entries()` are the JSON lines it wrote there so far."""

    def __init__(self, command: list[str | Path], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        # none of this session's WORKER_* / TRAINING_* settings leak in: only `env`'s
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "TRAINING_"))}
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(part) for part in command], cwd=REPO, env={**base, **env},
                stdout=out, stderr=out,
            )  # fmt: skip

    def entries(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far (the Kafka client's and ours; other output skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and line.endswith("}"):
                out.append(json.loads(line))
        return out

    def said(self, text: str, level: str | None = None) -> list[str]:
        """Its log messages that contain `text` (at `level`, if given)."""
        return [
            e["message"] for e in self.entries()
            if text in e["message"] and (level is None or e["level"] == level)
        ]  # fmt: skip

    def wait_said(self, text: str, timeout_s: float = 60) -> str:
        """The first message containing `text`, waiting for it (failing with the process's
        state if it exits or the deadline passes first)."""
        wait_until(lambda: bool(self.said(text)) or self.popen.poll() is not None, timeout_s,
                   f"the process to say {text!r}", self.state)  # fmt: skip
        found = self.said(text)
        assert found, f"exited without saying {text!r}\n{self.state()}"
        return found[0]

    def signal(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout_s: float = 120) -> int:
        """Its exit status, once it exits (TimeoutExpired past `timeout_s`)."""
        return self.popen.wait(timeout_s)

    def state(self) -> str:
        """Its exit status and the end of its output: what it was doing."""
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        return f"exit status {self.popen.poll()}; the end of its output:\n" + "\n".join(tail)

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Killed if still running (a test that failed midway leaves no process behind)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)


def run_worker(env: Mapping[str, str], log: Path, *args: str) -> Process:
    """`anomaly-worker [args]` started with `env`."""
    return Process([WORKER, *args], env, log)


def cli(
    settings: WorkerSettings, *args: str, feedback: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m training ARGS` on the worker's broker and topics, as an engineer runs it."""
    feedback = feedback or f"{settings.topics.alerts}.verdicts"
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TRAINING_TOPICS__INPUT": settings.topics.input,
           "TRAINING_TOPICS__ALERTS": settings.topics.alerts,
           "TRAINING_TOPICS__FEEDBACK": feedback, **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
