"""The model store: immutable versions and a pointer to the current one.

    <location>/versions/<version>/   one artifact per version (manifest, weights, report,
                                     and decision.json when a gate decided on it)
    <location>/current               the current version's name, one line
    <location>/history               "<unix time> <version>" each time the pointer moved

The location is a directory (a volume shared by the training job and the workers) or
`s3://bucket/prefix` on S3-compatible object storage, with the same layout and guarantees
(anomaly/model/storage.py). Publishing writes a whole version first, then replaces the
pointer with a compare-and-swap against the version the publisher last saw current, so two
training runs cannot interleave: the loser fails (StoreConflictError), and its version is
removed again, so it publishes nothing. A reader follows the pointer to a complete,
never-modified version, so it never sees half a model.

Named models (several asset types, one store): each name has a store of the layout above,
`<location>/models/<name>/`; the model named `default` is the location itself, so a store
written before named models existed is the `default` model, with nothing to migrate
(`model_store`, `model_names`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anomaly.model.artifact import (
    MANIFEST,
    Artifact,
    Manifest,
    Rebuild,
    load_artifact,
    parse_manifest,
)
from anomaly.model.errors import ArtifactError
from anomaly.model.storage import Storage, StoreConflictError, open_storage
from anomaly.settings import DEFAULT_MODEL, MODEL_NAME, check_model_name

VERSIONS = "versions"
POINTER = "current"
HISTORY = "history"
DECISION = "decision.json"
MODELS = "models"
# The pointer as the publisher last saw it: `publish` replaces it only if it is unchanged.
SEEN_NOW = object()


def model_store(location: str | Path, name: str = DEFAULT_MODEL) -> ModelStore:
    """The store of one named model under the store's location (a directory or s3://...)."""
    check_model_name(name)
    storage = open_storage(location)
    return ModelStore(storage if name == DEFAULT_MODEL else storage.child(f"{MODELS}/{name}"))


def model_names(location: str | Path) -> list[str]:
    """The models the store holds: `default` when the location has versions or a pointer of
    its own, then every valid name under models/, sorted."""
    storage = open_storage(location)
    names = []
    if storage.read(POINTER) is not None or storage.names(VERSIONS):
        names.append(DEFAULT_MODEL)
    names += [
        name for name in storage.names(MODELS)
        if MODEL_NAME.match(name) and name != DEFAULT_MODEL
    ]  # fmt: skip
    return names


@dataclass(frozen=True)
class VersionInfo:
    """One version as listed: its manifest, or why it cannot be read."""

    name: str
    is_current: bool
    manifest: Manifest | None
    problem: str | None
    status: str | None = None  # "promoted" or "rejected: <reasons>" when a gate decided


class ModelStore:
    """Versions of one model at one location (a shared directory or an S3 prefix)."""

    def __init__(self, storage: Storage | str | Path) -> None:
        self.storage = open_storage(storage) if isinstance(storage, (str, Path)) else storage
        self.location = self.storage.location

    # Reading ----------------------------------------------------------------------------

    def current_version(self) -> str | None:
        """The version the pointer names, or None when nothing was published yet."""
        return self._pointer()[0]

    def load(self, version: str, rebuild: Rebuild | None = None) -> Artifact:
        """Load one version; ArtifactError when it is missing or refused (`rebuild`: a
        version without a graph gets one: `load_artifact`)."""
        key = self._version_key(version)
        with self.storage.fetch_tree(key) as directory:
            if not directory.is_dir() or not any(directory.iterdir()):
                known = ", ".join(self._names()) or "none"
                raise ArtifactError(
                    f"version {version!r} does not exist in {self.location} (versions: {known})"
                )
            return load_artifact(directory, rebuild)

    def load_current(self) -> Artifact:
        """Load the current version; ArtifactError when there is none or it is refused."""
        version = self.current_version()
        if version is None:
            raise ArtifactError(
                f"model store {self.location} has no current model; train one with "
                "`anomaly-train fit` or point it at a version with `anomaly-train rollback`"
            )
        if version not in self._names():
            raise ArtifactError(
                f"model store {self.location} points at version {version!r}, which does not exist"
            )
        return self.load(version)

    def list_versions(self) -> list[VersionInfo]:
        """Every version, oldest first (names start with their UTC creation time)."""
        current = self.current_version()
        infos = []
        for name in self._names():
            key = f"{VERSIONS}/{name}"
            found = self.storage.read(f"{key}/{MANIFEST}")
            manifest: Manifest | None = None
            if found is None:
                problem: str | None = f"artifact {self.location}/{key} has no {MANIFEST}"
            else:
                try:
                    manifest, problem = parse_manifest(found[0], f"{self.location}/{key}"), None
                except ArtifactError as exc:
                    problem = str(exc)
            decision = self.storage.read(f"{key}/{DECISION}")
            status = _status(decision[0]) if decision else None
            infos.append(VersionInfo(name, name == current, manifest, problem, status))
        return infos

    def read_file(self, version: str, name: str) -> bytes:
        """One file of a version (its report, its decision); ArtifactError when missing."""
        found = self.storage.read(f"{self._version_key(version)}/{name}")
        if found is None:
            raise ArtifactError(f"version {version!r} in {self.location} has no {name}")
        return found[0]

    # Writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh local directory to write a version into.

        Pass it to `publish` inside the block; whatever is left of it afterwards (an error
        happened, or it was never published) is removed.
        """
        with self.storage.staging() as path:
            yield path

    def publish(
        self, staged: Path, *, make_current: bool = True, replaces: object = SEEN_NOW
    ) -> str:
        """Write a staged, complete artifact as a new version and (by default) point at it.

        The version's name is its manifest's model_version. The staged artifact is loaded
        first, so a version that would be refused is never published. `replaces`: the
        version the caller saw current when it started (None: none), so that a run that
        gated against one model cannot replace another; StoreConflictError, and nothing
        published, when the pointer moved since. By default, the pointer as read here.
        """
        artifact = load_artifact(staged)
        version = artifact.version
        if version in self._names():
            raise ArtifactError(f"version {version!r} already exists in {self.location}")
        seen, tag = self._pointer()
        if replaces is not SEEN_NOW and make_current and replaces != seen:
            raise _moved(self.location, replaces, seen)
        self.storage.put_tree(staged, f"{VERSIONS}/{version}")
        if make_current:
            try:
                self._write_pointer(version, tag)
            except StoreConflictError:
                self.storage.remove_tree(f"{VERSIONS}/{version}")
                raise _moved(self.location, seen, self.current_version()) from None
        return version

    def set_current(self, version: str) -> Artifact:
        """Point at an existing version (rollback or roll forward) after checking it loads."""
        _, tag = self._pointer()
        artifact = self.load(version)
        self._write_pointer(version, tag)
        return artifact

    def prune(self, keep: int, protect_s: float = 600.0) -> list[str]:
        """Delete all but the newest `keep` versions; returns the deleted.

        Never deletes the current version, nor one that was current within the last
        `protect_s` seconds (a worker that read the pointer then may still be loading it).
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        protected = {self.current_version()} | self._recently_current(protect_s)
        names = self._names()
        doomed = [name for name in names[: max(0, len(names) - keep)] if name not in protected]
        for name in doomed:
            self.storage.remove_tree(f"{VERSIONS}/{name}")
        return doomed

    # Internals --------------------------------------------------------------------------

    def _pointer(self) -> tuple[str | None, str | None]:
        """The version the pointer names (None: none) and the tag to replace it with."""
        found = self.storage.read(POINTER)
        if found is None:
            return None, None
        data, tag = found
        return data.decode("utf-8", "replace").strip() or None, tag

    def _write_pointer(self, version: str, tag: str | None) -> None:
        self.storage.replace(POINTER, (version + "\n").encode(), tag)
        self.storage.append(HISTORY, f"{time.time():.3f} {version}")

    def _recently_current(self, seconds: float) -> set[str]:
        since = time.time() - seconds
        found = self.storage.read(HISTORY)
        recent = set()
        for line in (found[0].decode("utf-8", "replace") if found else "").splitlines():
            stamp, _, name = line.partition(" ")
            try:
                if float(stamp) >= since:
                    recent.add(name)
            except ValueError:
                continue
        return recent

    def _names(self) -> list[str]:
        return self.storage.names(VERSIONS)

    def _version_key(self, version: str) -> str:
        if not version or "/" in version or version.startswith("."):
            raise ArtifactError(f"{version!r} is not a version name")
        return f"{VERSIONS}/{version}"


def _status(data: bytes) -> str | None:
    try:
        decision = json.loads(data)
    except ValueError:
        return None
    if decision.get("promoted"):
        return "promoted"
    return "rejected: " + "; ".join(decision.get("reasons") or ["no reason recorded"])


def _moved(location: str, expected: object, found: str | None) -> StoreConflictError:
    return StoreConflictError(
        f"the current model of {location} is now {found or 'none'}, not "
        f"{expected or 'none'} as when this run started: another training run published "
        "meanwhile; nothing was published (run again to gate against the new model)"
    )
