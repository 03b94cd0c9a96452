"""The model store: publish, pointer, rollback, prune, readers racing a publisher, and a
directory store that cannot be read (filesystem errors injected at the filesystem calls)."""

import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from anomaly.model import ArtifactError, ModelStore
from anomaly.model.artifact import WEIGHTS
from anomaly.model.storage import StoreConflictError, StoreUnavailableError
from tests.support.models import race_publishers
from worker.metrics import Metrics
from worker.reload import ModelWatcher

Publish = Callable[[ModelStore, str], str]


def test_publish_makes_the_new_version_current(tmp_path: Path, publish_random: Publish) -> None:
    store = ModelStore(tmp_path)
    assert store.current_version() is None
    publish_random(store, "v1")
    publish_random(store, "v2")
    assert store.current_version() == "v2"
    assert store.load_current().version == "v2"
    assert [(v.name, v.is_current) for v in store.list_versions()] == [
        ("v1", False),
        ("v2", True),
    ]
    assert not list(tmp_path.glob(".staging-*"))


def test_an_empty_store_says_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no current model; train one with"):
        ModelStore(tmp_path).load_current()


def test_a_pointer_to_a_missing_version_is_refused(tmp_path: Path, publish_random: Publish) -> None:
    store = ModelStore(tmp_path)
    publish_random(store, "v1")
    Path(store.location, "current").write_text("v9\n")
    with pytest.raises(ArtifactError, match="points at version 'v9', which does not exist"):
        store.load_current()


def test_rollback_points_back_and_refuses_what_cannot_load(
    tmp_path: Path, publish_random: Publish
) -> None:
    store = ModelStore(tmp_path)
    for name in ("v1", "v2", "v3"):
        publish_random(store, name)
    assert store.set_current("v1").version == "v1"
    assert store.load_current().version == "v1"
    with pytest.raises(ArtifactError, match="version 'v7' does not exist"):
        store.set_current("v7")
    (Path(store.location, "versions") / "v2" / WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        store.set_current("v2")
    with pytest.raises(ArtifactError, match="not a version name"):
        store.set_current("../v1")
    assert store.current_version() == "v1"


def test_prune_keeps_the_newest_and_never_the_current(
    tmp_path: Path, publish_random: Publish
) -> None:
    store = ModelStore(tmp_path)
    for name in ("v1", "v2", "v3", "v4"):
        publish_random(store, name)
    store.set_current("v1")
    assert store.prune(keep=2, protect_s=0) == ["v2"]
    assert [v.name for v in store.list_versions()] == ["v1", "v3", "v4"]
    assert store.prune(keep=1, protect_s=0) == ["v3"]
    assert [v.name for v in store.list_versions()] == ["v1", "v4"]
    assert store.load_current().version == "v1"
    assert not list(tmp_path.glob(".trash-*"))


def test_a_version_that_would_be_refused_is_never_published(
    tmp_path: Path, publish_random: Publish
) -> None:
    store = ModelStore(tmp_path)
    publish_random(store, "v1")
    with store.staging() as staging:
        (staging / "manifest.json").write_text("{}")
        with pytest.raises(ArtifactError):
            store.publish(staging)
    assert [v.name for v in store.list_versions()] == ["v1"]
    assert store.current_version() == "v1"
    assert not list(tmp_path.glob(".staging-*"))


def test_a_reader_racing_a_publisher_never_loads_a_partial_model(
    tmp_path: Path, publish_random: Publish
) -> None:
    store = ModelStore(tmp_path)
    publish_random(store, "v000")
    done = threading.Event()
    seen: set[str] = set()
    failures: list[Exception] = []

    def read() -> None:
        reader = ModelStore(tmp_path)
        while not done.is_set():
            try:
                seen.add(reader.load_current().version)
            except Exception as exc:
                failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(1, 40):
            publish_random(store, f"v{i:03d}")
    finally:
        done.set()
        thread.join(timeout=60)
    assert not failures, failures[:3]
    # The reader saw the store change under it several times, each time a whole model.
    assert len(seen) >= 3


def test_prune_spares_versions_that_were_current_recently(
    tmp_path: Path, publish_random: Publish
) -> None:
    store = ModelStore(tmp_path)
    for name in ("v1", "v2", "v3"):
        publish_random(store, name)  # each became current on publishing
    with store.staging() as staging:  # v4 is published without becoming current
        shutil.copytree(Path(store.location, "versions") / "v3", staging, dirs_exist_ok=True)
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest["model_version"] = "v4"
        (staging / "manifest.json").write_text(json.dumps(manifest))
        store.publish(staging, make_current=False)
    # v1 and v2 were current a moment ago: a worker may still be loading them.
    assert store.prune(keep=1, protect_s=600) == []
    assert store.prune(keep=1, protect_s=0) == ["v1", "v2"]
    assert [v.name for v in store.list_versions()] == ["v3", "v4"]


def test_two_runs_publishing_at_once_one_wins_and_the_loser_publishes_nothing(
    tmp_path: Path, publish_random: Publish
) -> None:
    """The pointer is replaced by compare-and-swap (under a lock on a shared directory): each
    run says which version it gated against; when the pointer moved since, it fails."""
    publish_random(ModelStore(tmp_path), "v0")
    outcomes = race_publishers(lambda: ModelStore(tmp_path), ["va", "vb"], "v0")
    [winner] = [name for name, outcome in outcomes.items() if outcome == name]
    [loser] = [name for name, outcome in outcomes.items() if outcome != name]
    assert isinstance(outcomes[loser], StoreConflictError)
    assert "nothing was published" in str(outcomes[loser])
    store = ModelStore(tmp_path)
    assert store.current_version() == winner
    assert [v.name for v in store.list_versions()] == sorted(["v0", winner])


class FailingDisk:
    """While `failing`, every read under `root` (a file's bytes, a directory's entries, a file
    opened) raises OSError(`code`), as an NFS volume answers ESTALE or EIO."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
        self.root, self.code, self.failing = root, code, False
        read_bytes, scandir, open_ = Path.read_bytes, os.scandir, Path.open

        def guarded_read_bytes(path: Path) -> bytes:
            self._check(path)
            return read_bytes(path)

        def guarded_scandir(path: Any = ".") -> Any:
            self._check(Path(path))
            return scandir(path)

        def guarded_open(path: Path, *args: Any, **kwargs: Any) -> Any:
            self._check(path)
            return open_(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_bytes", guarded_read_bytes)
        monkeypatch.setattr(os, "scandir", guarded_scandir)
        monkeypatch.setattr(Path, "open", guarded_open)

    def _check(self, path: Path) -> None:
        if self.failing and path.is_relative_to(self.root):
            raise OSError(self.code, os.strerror(self.code), str(path))


def store_errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "anomaly_model_store_errors_total", {"model": "default"}
    )
    return value or 0.0


def load_failures(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "anomaly_model_load_failures_total", {"model": "default"}
    )
    return value or 0.0


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def serving(
    tmp_path: Path, publish_random: Publish, caplog: pytest.LogCaptureFixture
) -> tuple[ModelStore, ModelWatcher]:
    """A directory store with v1 current and a watcher (looking at every poll) serving it;
    the watcher's log captured from INFO."""
    caplog.set_level(logging.INFO, "worker.reload")
    store = ModelStore(tmp_path / "store")
    publish_random(store, "v1")
    watcher = ModelWatcher(store, 0.0, Metrics(CollectorRegistry()))
    loaded = watcher.poll()
    assert loaded is not None
    assert loaded.version == "v1"
    return store, watcher


@pytest.mark.parametrize("code", [errno.ESTALE, errno.EIO, errno.EACCES])
def test_a_store_that_cannot_be_read_keeps_the_model_in_service_and_says_so_once(
    serving: tuple[ModelStore, ModelWatcher],
    publish_random: Publish,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
) -> None:
    """Any filesystem error reading the directory store is a store that cannot be read, as an
    S3 outage is: the watcher keeps v1, counts each look, logs it once; readable again, it
    says so once and takes up the version published meanwhile (nothing refused)."""
    store, watcher = serving
    publish_random(store, "v2")
    disk = FailingDisk(monkeypatch, Path(store.location), code)
    disk.failing = True
    for _ in range(3):
        assert watcher.poll() is None
    assert watcher.current is not None
    assert watcher.current.version == "v1"
    assert store_errors(watcher.metrics) == 3
    [logged] = said(caplog, "model store cannot be read")
    assert os.strerror(code) in logged
    assert watcher.unavailable is not None
    with pytest.raises(StoreUnavailableError, match=os.strerror(code)):
        store.list_versions()
    disk.failing = False
    loaded = watcher.poll()
    assert loaded is not None
    assert loaded.version == "v2"
    assert watcher.unavailable is None
    assert len(said(caplog, "reachable again")) == 1
    assert load_failures(watcher.metrics) == 0


def test_a_version_whose_files_cannot_be_read_is_not_refused_but_loaded_once_they_can(
    serving: tuple[ModelStore, ModelWatcher],
    publish_random: Publish,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pointer readable, the new version's files not (EIO): a store error, counted, not a
    refusal (a refused version is never looked at again); loaded at the next look once
    its files read."""
    store, watcher = serving
    publish_random(store, "v2")
    disk = FailingDisk(monkeypatch, Path(store.location, "versions", "v2"), errno.EIO)
    disk.failing = True
    assert watcher.poll() is None
    assert watcher.poll() is None
    assert store_errors(watcher.metrics) == 2
    assert load_failures(watcher.metrics) == 0
    assert not said(caplog, "refused model")
    disk.failing = False
    loaded = watcher.poll()
    assert loaded is not None
    assert loaded.version == "v2"


def test_a_store_deleted_under_the_watcher_is_a_store_that_cannot_be_read(
    serving: tuple[ModelStore, ModelWatcher],
    publish_random: Publish,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The directory gone after it was read (deleted, a volume unmounted): not an empty store
    "waiting for a model"; counted and logged once; a model published there again is loaded."""
    store, watcher = serving
    shutil.rmtree(store.location)
    assert watcher.poll() is None
    assert watcher.poll() is None
    assert store_errors(watcher.metrics) == 2
    [logged] = said(caplog, "model store cannot be read")
    assert f"model store {store.location} is gone" in logged
    assert not said(caplog, "waiting for a model")
    assert watcher.current is not None
    assert watcher.current.version == "v1"
    publish_random(ModelStore(store.location), "v2")
    loaded = watcher.poll()
    assert loaded is not None
    assert loaded.version == "v2"
    assert len(said(caplog, "reachable again")) == 1


@pytest.mark.parametrize("exists", [False, True], ids=["absent", "empty"])
def test_a_store_nothing_was_published_to_yet_is_waited_for_not_an_error(
    tmp_path: Path, publish_random: Publish, caplog: pytest.LogCaptureFixture, exists: bool
) -> None:
    """A new store (its directory absent, or empty) at start: "waiting for a model", no store
    error; the first model published there is loaded."""
    root = tmp_path / "store"
    if exists:
        root.mkdir()
    watcher = ModelWatcher(ModelStore(root), 0.0, Metrics(CollectorRegistry()))
    assert watcher.poll() is None
    assert watcher.poll() is None
    assert len(said(caplog, "waiting for a model")) == 1
    assert store_errors(watcher.metrics) == 0
    assert watcher.unavailable is None
    publish_random(ModelStore(root), "v1")
    loaded = watcher.poll()
    assert loaded is not None
    assert loaded.version == "v1"
