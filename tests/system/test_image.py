"""The worker's image, built and run as its pod runs it: built with podman from the Dockerfile
on a Debian base that `devtools/images/base.sh` makes here (kept once made), run with a
read-only root filesystem as user 10001 with every capability dropped, the model store
mounted read-only, against Apache Kafka 4 on loopback: it serves records, raises alerts,
says it is ready, and on SIGTERM drains and exits 0.

The review page's image too: built the same way, run read-only and unprivileged, it follows a
worker's episodes on Kafka 4 and draws one's figure.

The training image is not built here: its torch from PyPI is the CUDA build, several GB per
build on these machines (docs/operations.md, "Images")."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import simulator
from devtools.local_broker import LocalBroker, free_port
from devtools.topics import committed_total, create_topics
from tests.support.http import get
from tests.support.kafka import produce, published_events, read, settings_on
from tests.support.models import REPO, Trained
from tests.support.process import worker_env
from tests.support.review import JUDGE, request, review_env
from tests.support.waiting import wait_until

BASE = "localhost/debian-python:bookworm"
IMAGE = "localhost/sensor-anomaly-worker:test"
REVIEW_IMAGE = "localhost/sensor-anomaly-review:test"
PODMAN = str(REPO / "devtools" / "images" / "podman.sh")
CA = Path("/etc/ssl/certs/ca-certificates.crt")  # pip inside the build trusts what we do

# Off CI a machine without them skips; on CI (CI=true) the skip fails (tests/support/ci.py).
pytestmark = pytest.mark.skipif(
    not (shutil.which("podman") and shutil.which("debootstrap")),
    reason="building the image needs podman and debootstrap (make system)",
)


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The worker image, built from this checkout; afterwards the images no tag names any
    more (an earlier build's, the build stages) are removed, so that runs do not fill the
    disk."""
    base = subprocess.run([str(REPO / "devtools" / "images" / "base.sh"), BASE],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert base.returncode == 0, base.stdout + base.stderr
    secret = ["--secret", f"id=build_ca,src={CA}"] if CA.is_file() else []
    for target, tag in (("worker", IMAGE), ("review", REVIEW_IMAGE)):
        build = podman("build", "--target", target, *secret, "--build-arg", f"BASE={BASE}",
                       "-t", tag, str(REPO), timeout=1200)  # fmt: skip
        assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    yield IMAGE
    podman("image", "prune", "--force", timeout=300)


def test_the_image_holds_the_worker_and_no_torch(image: str) -> None:
    user = podman("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Cmd}}", image)
    assert user.stdout.split(" ", 1) == ["10001:10001", '["anomaly-worker","run"]\n']
    probe = podman("run", "--rm", "--read-only", "--cap-drop", "ALL", image, "python", "-c",
                   "import importlib.util as u; print([m for m in ('torch', 'onnxruntime', "
                   "'training') if u.find_spec(m)])")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "['onnxruntime']"


@pytest.fixture
def container() -> Iterator[str]:
    name = f"sensor-anomaly-test-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name)


def test_the_worker_image_serves_kafka_4_read_only_unprivileged_and_drains_on_sigterm(
    image: str, container: str, kafka4: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained.root, store)
    for path in [store, *store.rglob("*")]:  # readable by the image's user, nothing more
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings = settings_on(kafka4, "/models")
    port = free_port()
    env = worker_env(settings, WORKER_HTTP__PORT=port, WORKER_LOG_FORMAT="json")
    fleet = simulator.Fleet(n_assets=4, seed=11)
    sent = produce(settings, [*fleet.records(150, fleet.faults(150)), (b"x", b"not json")])

    run = podman(
        "run", "--detach", "--name", container, "--network", "host", "--read-only",
        "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "1g", "--pids-limit", "256", "--volume", f"{store}:/models:ro",
        *[f"--env={name}={value}" for name, value in env.items()], image,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    def ready() -> bool:
        try:
            return get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        except OSError:
            return False

    wait_until(ready, 120, "the container's /readyz")
    group, topic = settings.topics.group, settings.topics.input
    wait_until(lambda: committed_total(settings.kafka, group, topic) >= sent, 120,
               "every record committed")  # fmt: skip
    events = [json.loads(r.value or b"") for r in read(settings, settings.topics.alerts, 1)]
    assert {e["type"] for e in events} >= {"open"}
    [dead] = read(settings, settings.topics.dead_letters, 1)
    assert json.loads(dead.value or b"")["reason"] == "not_json"
    user = podman("top", container, "huser")
    assert user.stdout.split()[1:] == ["10001"], user.stdout
    read_only = podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container)
    assert read_only.stdout.strip() == "true"

    assert podman("kill", "--signal", "TERM", container).returncode == 0
    assert podman("wait", container, timeout=90).stdout.strip() == "0"
    logs = podman("logs", container).stdout + podman("logs", container).stderr
    messages = [json.loads(line)["message"] for line in logs.splitlines() if line.startswith("{")]
    assert any(m.startswith("SIGTERM: draining") for m in messages), messages[-20:]
    assert any(m.startswith("stopping after") for m in messages), messages[-20:]


def test_the_review_image_follows_the_episodes_and_draws_a_figure_read_only_unprivileged(
    image: str, container: str, kafka4: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    user = podman("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Cmd}}",
                  REVIEW_IMAGE)  # fmt: skip
    assert user.stdout.split(" ", 1) == ["10001:10001", '["anomaly-review","run"]\n']
    probe = podman("run", "--rm", "--read-only", "--cap-drop", "ALL", REVIEW_IMAGE, "python",
                   "-c", "import importlib.util as u; print([m for m in ('torch', 'review', "
                   "'matplotlib') if u.find_spec(m)])")  # fmt: skip
    assert probe.stdout.strip() == "['review', 'matplotlib']", probe.stderr
    store = tmp_path / "store"
    shutil.copytree(trained.root, store)
    for path in [store, *store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings = settings_on(kafka4, store)
    fleet = simulator.Fleet(n_assets=4, seed=11)
    events = published_events(settings, fleet.records(300, fleet.faults(300, first=100)), 120)
    episode = next(e["episode_id"] for e in events if e["type"] == "open")
    feedback = f"{settings.topics.alerts}.verdicts"
    create_topics(settings.kafka, {feedback: 1})
    port = free_port()
    env = review_env(settings, feedback, REVIEW_STORE__PATH="/models", REVIEW_HTTP__PORT=port)
    run = podman(
        "run", "--detach", "--name", container, "--network", "host", "--read-only",
        "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "1g", "--volume", f"{store}:/models:ro",
        *[f"--env={name}={value}" for name, value in env.items()], REVIEW_IMAGE,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    base = f"http://127.0.0.1:{port}/"

    def ready() -> bool:
        return get(base + "readyz")[0] == 200

    wait_until(ready, 120, "the review container's /readyz",
               lambda: podman("logs", container).stderr[-2000:])  # fmt: skip
    status, page, _ = request(f"{base}episodes/{episode}", JUDGE)
    assert status == 200, page
    status, figure, headers = request(f"{base}episodes/{episode}/figure.png", JUDGE)
    assert status == 200, figure
    assert headers["Content-Type"] == "image/png"
    assert podman("kill", "--signal", "TERM", container).returncode == 0
    assert podman("wait", container, timeout=60).stdout.strip() == "0"
