"""The model store: publish, pointer, rollback, prune, and readers racing a publisher."""

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from anomaly.model import ArtifactError, ModelStore
from anomaly.model.artifact import WEIGHTS
from anomaly.model.storage import StoreConflictError
from tests.support.models import race_publishers

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
