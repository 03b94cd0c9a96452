"""The model store on a real S3-compatible server (SeaweedFS): the directory store's layout and
guarantees on a bucket, and a worker that follows the pointer through an outage."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from anomaly.model import ArtifactError, ModelStore, model_names, model_store
from anomaly.model.artifact import MANIFEST, WEIGHTS
from anomaly.model.s3 import S3Storage
from anomaly.model.storage import StoreConflictError, StoreUnavailableError
from devtools.local_broker import LocalBroker, free_port
from devtools.local_s3 import BUCKET, Identity, LocalS3, start_seaweedfs
from devtools.simulator import Fleet
from tests.support.http import get
from tests.support.kafka import Running, processed, produce, settings_on
from tests.support.models import race_publishers, write_random
from tests.support.waiting import wait_until
from worker.metrics import Metrics
from worker.reload import ModelWatcher, ModelWatchers

Publish = Callable[[ModelStore, str], str]


def keys(server: LocalS3, location: str) -> set[str]:
    """Every object under the store's prefix, relative to it."""
    prefix = location.removeprefix(f"s3://{BUCKET}/") + "/"
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                      Prefix=prefix)  # fmt: skip
    return {o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])}


def test_publish_load_list_and_named_models_on_a_bucket(
    seaweedfs: LocalS3, s3_location: str, publish_random: Publish
) -> None:
    store = model_store(s3_location)
    assert store.current_version() is None
    assert model_names(s3_location) == []
    publish_random(store, "v1")
    publish_random(store, "v2")
    assert store.current_version() == "v2"
    assert store.load_current().version == "v2"
    assert store.load("v1").version == "v1"
    infos = store.list_versions()
    assert [(i.name, i.is_current, i.problem) for i in infos] == [
        ("v1", False, None), ("v2", True, None)
    ]  # fmt: skip
    assert infos[1].manifest is not None
    assert infos[1].manifest.model_version == "v2"
    # the directory store's layout, as keys
    assert {"current", "history", f"versions/v1/{MANIFEST}", f"versions/v2/{WEIGHTS}"} <= keys(
        seaweedfs, s3_location
    )
    publish_random(model_store(s3_location, "pumps"), "p1")
    assert model_names(s3_location) == ["default", "pumps"]
    assert model_store(s3_location, "pumps").load_current().version == "p1"
    with pytest.raises(ArtifactError, match="version 'v9' does not exist"):
        store.load("v9")


def test_a_version_half_written_is_never_served(
    seaweedfs: LocalS3, s3_location: str, publish_random: Publish, tmp_path: Path
) -> None:
    """A publisher that died mid-upload (the weights there, no manifest, the pointer not
    moved): readers keep the current version, the listing shows the half one as unreadable."""
    store = model_store(s3_location)
    publish_random(store, "v1")
    write_random(tmp_path, "v2")
    prefix = s3_location.removeprefix(f"s3://{BUCKET}/")
    seaweedfs.client().upload_file(
        str(tmp_path / WEIGHTS), BUCKET, f"{prefix}/versions/v2/{WEIGHTS}"
    )
    assert store.load_current().version == "v1"
    [_, half] = store.list_versions()
    assert half.name == "v2"
    assert half.problem is not None
    assert "has no manifest.json" in half.problem


def test_a_reader_racing_a_publisher_never_loads_a_partial_model(
    s3_location: str, publish_random: Publish
) -> None:
    publisher, reader = model_store(s3_location), model_store(s3_location)
    publish_random(publisher, "v00")
    versions = [f"v{i:02d}" for i in range(1, 6)]
    loaded: list[str] = []
    errors: list[Exception] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                loaded.append(reader.load_current().version)
            except Exception as exc:  # any failure to load is the bug this test looks for
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for version in versions:
            publish_random(publisher, version)
    finally:
        done.set()
        thread.join(60)
    assert errors == []
    assert len(loaded) >= 5
    assert loaded == sorted(loaded)  # never back to an older version
    assert set(loaded) <= {"v00", *versions}


def test_two_publishers_racing_one_wins_and_the_loser_publishes_nothing(
    s3_location: str, publish_random: Publish
) -> None:
    publish_random(model_store(s3_location), "v0")
    for round_ in range(3):  # a conditional write, not luck: every round has one winner
        seen = model_store(s3_location).current_version()
        names = [f"v{round_ + 1}-a", f"v{round_ + 1}-b"]
        outcomes = race_publishers(lambda: model_store(s3_location), names, seen)
        [winner] = [name for name in names if outcomes[name] == name]
        [loser] = [name for name in names if outcomes[name] != name]
        assert isinstance(outcomes[loser], StoreConflictError)
        assert "another training run published meanwhile" in str(outcomes[loser])
        store = model_store(s3_location)
        assert store.current_version() == winner
        assert loser not in {info.name for info in store.list_versions()}

    # a run that gated against an older model than the one now current publishes nothing
    late = model_store(s3_location)
    with late.staging() as staging:
        write_random(staging, "v9-late")
        with pytest.raises(StoreConflictError, match="not v0 as when this run started"):
            late.publish(staging, replaces="v0")
    assert "v9-late" not in {info.name for info in late.list_versions()}


def test_rollback_and_prune_on_a_bucket(
    seaweedfs: LocalS3, s3_location: str, publish_random: Publish
) -> None:
    store = model_store(s3_location)
    for name in ("v1", "v2", "v3", "v4"):
        publish_random(store, name)
    assert store.set_current("v1").version == "v1"
    assert store.current_version() == "v1"
    with pytest.raises(ArtifactError, match="version 'v7' does not exist"):
        store.set_current("v7")
    assert store.prune(keep=1) == []  # each was current within the protection window
    assert store.prune(keep=1, protect_s=0) == ["v2", "v3"]  # never the current, v1
    assert [info.name for info in store.list_versions()] == ["v1", "v4"]
    assert not any(key.startswith(("versions/v2/", "versions/v3/"))
                   for key in keys(seaweedfs, s3_location))  # fmt: skip
    assert store.load_current().version == "v1"


@pytest.mark.parametrize(
    ("damaged", "payload", "why"),
    [(WEIGHTS, b"truncated", "corrupt or truncated"), (MANIFEST, b'{"format_ver', "not readable")],
)
def test_a_corrupt_or_truncated_object_is_refused_while_the_previous_model_serves(
    seaweedfs: LocalS3,
    s3_location: str,
    publish_random: Publish,
    damaged: str,
    payload: bytes,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = model_store(s3_location)
    metrics = Metrics(CollectorRegistry())
    watcher = ModelWatcher(store, 0.0, metrics)
    publish_random(store, "v1")
    assert watcher.poll() is not None
    publish_random(store, "v2")
    prefix = s3_location.removeprefix(f"s3://{BUCKET}/")
    seaweedfs.client().put_object(Bucket=BUCKET, Key=f"{prefix}/versions/v2/{damaged}",
                                  Body=payload)  # fmt: skip
    assert watcher.poll() is None
    assert watcher.current is not None
    assert watcher.current.version == "v1"
    failures = metrics.registry.get_sample_value(
        "anomaly_model_load_failures_total", {"model": "default"}
    )
    assert failures == 1
    refusal = next(r.getMessage() for r in caplog.records if "refused model" in r.getMessage())
    assert why in refusal
    assert f"{s3_location}/versions/v2" in refusal  # the object named, not a temporary copy


def test_an_unreachable_store_is_not_ready_only_until_a_model_was_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nobody
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    metrics = Metrics(CollectorRegistry())
    watchers = ModelWatchers(f"s3://{BUCKET}/nowhere", ["default"], 0.0, metrics)
    assert watchers.poll() == []
    assert watchers.poll() == []
    assert watchers.unavailable is not None
    assert "unreachable" in watchers.unavailable
    assert not watchers.all_loaded
    errors = metrics.registry.get_sample_value(
        "anomaly_model_store_errors_total", {"model": "default"}
    )
    assert errors == 2


def test_the_worker_serves_through_a_store_outage_and_follows_the_pointer_after(
    broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with read and list only (SeaweedFS's `worker` identity), SeaweedFS stopped
    under it: it keeps scoring and stays ready, counts the failed looks; brought back on the
    same data, it loads the version the training identity publishes then."""
    with start_seaweedfs(tmp_path / "seaweedfs") as server:
        prefix = uuid.uuid4().hex[:8]
        location = f"s3://{BUCKET}/{prefix}"

        def as_role(role: Identity) -> ModelStore:
            return ModelStore(S3Storage(BUCKET, prefix, server.client(role)))

        publish(as_role(server.trainer), "v1")
        with pytest.raises(StoreUnavailableError, match="AccessDenied"):
            publish(as_role(server.worker), "v1-by-the-worker")  # the worker cannot write
        for name, value in server.env(server.worker).items():
            monkeypatch.setenv(name, value)
        settings = settings_on(broker, location)
        settings = settings.model_copy(
            update={"store": settings.store.model_copy(update={"reload_interval_s": 0.2})}
        )
        running = Running(settings)
        try:
            records = Fleet(n_assets=4, seed=5).records(400)
            sent = produce(settings, (next(records) for _ in range(400)))
            wait_until(lambda: processed(running.metrics) >= sent, 60, "records scored")
            assert running.worker.http is not None
            ready = f"http://127.0.0.1:{running.worker.http.port}/readyz"

            def store_errors() -> float:
                value = running.metrics.registry.get_sample_value(
                    "anomaly_model_store_errors_total", {"model": "default"}
                )
                return value or 0.0

            server.stop()
            wait_until(lambda: store_errors() >= 2, 60, "failed looks at the store counted")
            sent += produce(settings, (next(records) for _ in range(800)))
            wait_until(lambda: processed(running.metrics) >= sent, 60, "scored in the outage")
            assert get(ready)[0] == 200  # a model serves: the outage is not a readiness matter

            server.start()  # the same data
            publish(as_role(server.trainer), "v2")
            wait_until(
                lambda: running.metrics.registry.get_sample_value(
                    "anomaly_model_info", {"model": "default", "version": "v2"}
                ) == 1,
                60, "the worker on v2",
            )  # fmt: skip
        finally:
            code = running.stop()
        assert code == 0


def publish(store: ModelStore, version: str) -> None:
    with store.staging() as staging:
        write_random(staging, version)
        store.publish(staging)
