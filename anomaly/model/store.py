"""The model store: a directory of immutable versions and a pointer to the current one.

    <root>/versions/<version>/   one artifact per version (manifest, weights, report, and
                                 decision.json when a gate decided on it)
    <root>/current               the current version's name, one line
    <root>/history               "<unix time> <version>" each time the pointer moved
    <root>/.staging-*            versions being written; never read

Publishing writes a version into a staging directory, renames it into versions/ (atomic on
one filesystem), then replaces the pointer (write a temporary file, rename over). A reader
follows the pointer to a complete, never-modified directory, so it never sees half a model.

Named models (several asset types, one store): each name has a store of the layout above,
`<root>/models/<name>/`; the model named `default` is the root itself, so a store written
before named models existed is the `default` model, with nothing to migrate
(`model_store`, `model_names`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anomaly.model.artifact import Artifact, Manifest, load_artifact, read_manifest
from anomaly.model.errors import ArtifactError
from anomaly.settings import DEFAULT_MODEL, MODEL_NAME, check_model_name

VERSIONS = "versions"
POINTER = "current"
HISTORY = "history"
DECISION = "decision.json"
MODELS = "models"


def model_store(root: Path, name: str = DEFAULT_MODEL) -> ModelStore:
    """The store of one named model under the store root `root`."""
    check_model_name(name)
    return ModelStore(Path(root) if name == DEFAULT_MODEL else Path(root) / MODELS / name)


def model_names(root: Path) -> list[str]:
    """The models the store root holds: `default` when the root has versions or a pointer of
    its own, then every valid name under models/, sorted."""
    root = Path(root)
    names = []
    if (root / POINTER).exists() or (root / VERSIONS).is_dir():
        names.append(DEFAULT_MODEL)
    models = root / MODELS
    if models.is_dir():
        names += sorted(
            p.name for p in models.iterdir()
            if p.is_dir() and MODEL_NAME.match(p.name) and p.name != DEFAULT_MODEL
        )  # fmt: skip
    return names


@dataclass(frozen=True)
class VersionInfo:
    """One version directory as listed: its manifest, or why it cannot be read."""

    name: str
    is_current: bool
    manifest: Manifest | None
    problem: str | None
    status: str | None = None  # "promoted" or "rejected: <reasons>" when a gate decided


class ModelStore:
    """Versions of the model under one root directory (a volume shared by trainer and workers)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / VERSIONS
        self.pointer = self.root / POINTER

    # Reading ----------------------------------------------------------------------------

    def current_version(self) -> str | None:
        """The version the pointer names, or None when nothing was published yet."""
        try:
            name = self.pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def load(self, version: str) -> Artifact:
        """Load one version; ArtifactError when it is missing or refused."""
        return load_artifact(self._version_dir(version))

    def load_current(self) -> Artifact:
        """Load the current version; ArtifactError when there is none or it is refused."""
        version = self.current_version()
        if version is None:
            raise ArtifactError(
                f"model store {self.root} has no current model; train one with "
                "`anomaly-train fit` or point it at a version with `anomaly-train rollback`"
            )
        if not (self.versions_dir / version).is_dir():
            raise ArtifactError(
                f"model store {self.root} points at version {version!r}, which does not exist"
            )
        return self.load(version)

    def list_versions(self) -> list[VersionInfo]:
        """Every version, oldest first (names start with their UTC creation time)."""
        current = self.current_version()
        infos = []
        for name in self._names():
            try:
                manifest: Manifest | None = read_manifest(self.versions_dir / name)
                problem = None
            except ArtifactError as exc:
                manifest, problem = None, str(exc)
            infos.append(VersionInfo(name, name == current, manifest, problem, self._status(name)))
        return infos

    def _status(self, name: str) -> str | None:
        try:
            decision = json.loads((self.versions_dir / name / DECISION).read_text())
        except (OSError, ValueError):
            return None
        if decision.get("promoted"):
            return "promoted"
        return "rejected: " + "; ".join(decision.get("reasons") or ["no reason recorded"])

    # Writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory on the store's filesystem to write a version into.

        Pass it to `publish` inside the block; whatever is left of it afterwards (an error
        happened, or it was never published) is removed.
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, staged: Path, *, make_current: bool = True) -> str:
        """Move a staged, complete artifact into versions/ and (by default) point at it.

        The version's name is its manifest's model_version. The staged artifact is loaded
        first, so a version that would be refused is never published.
        """
        artifact = load_artifact(staged)
        version = artifact.version
        target = self.versions_dir / version
        if target.exists():
            raise ArtifactError(f"version {version!r} already exists in {self.root}")
        staged.rename(target)
        _fsync_dir(self.versions_dir)
        if make_current:
            self._write_pointer(version)
        return version

    def set_current(self, version: str) -> Artifact:
        """Point at an existing version (rollback or roll forward) after checking it loads."""
        artifact = self.load(version)
        self._write_pointer(version)
        return artifact

    def prune(self, keep: int, protect_s: float = 600.0) -> list[str]:
        """Delete all but the newest `keep` versions; returns the deleted.

        Never deletes the current version, nor one that was current within the last
        `protect_s` seconds (a worker that read the pointer then may still be loading it). A
        version is renamed out of versions/ before it is removed, so no reader finds a
        half-deleted version under its name.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        protected = {self.current_version()} | self._recently_current(protect_s)
        names = self._names()
        doomed = [name for name in names[: max(0, len(names) - keep)] if name not in protected]
        for name in doomed:
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
            (self.versions_dir / name).rename(trash / name)
            shutil.rmtree(trash)
        return doomed

    # Internals --------------------------------------------------------------------------

    def _recently_current(self, seconds: float) -> set[str]:
        since = time.time() - seconds
        try:
            lines = (self.root / HISTORY).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return set()
        recent = set()
        for line in lines:
            stamp, _, name = line.partition(" ")
            try:
                if float(stamp) >= since:
                    recent.add(name)
            except ValueError:
                continue
        return recent

    def _names(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir())

    def _version_dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ArtifactError(f"{version!r} is not a version name")
        path = self.versions_dir / version
        if not path.is_dir():
            known = ", ".join(self._names()) or "none"
            raise ArtifactError(
                f"version {version!r} does not exist in {self.root} (versions: {known})"
            )
        return path

    def _write_pointer(self, version: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".current-", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(version + "\n")
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(self.pointer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)
        with (self.root / HISTORY).open("a", encoding="utf-8") as log:
            log.write(f"{time.time():.3f} {version}\n")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
