"""Where the model store keeps its files: a directory, or a bucket on S3-compatible storage.

The store (anomaly/model/store.py) sees both through the same few operations on keys
("versions/<v>/manifest.json", "current", ...) relative to its location:

- `read(key)`: the bytes and a tag (None when the key does not exist);
- `replace(key, data, tag)`: write only if the key still holds what was read with `tag`
  (tag None: only if it does not exist) - the pointer's compare-and-swap, so two training
  runs cannot interleave (`StoreConflictError` for the loser);
- `append(key, line)`: the history, appended under the same guard;
- `names(key)`: the "directories" directly under a key;
- `put_tree(local, key)`, `fetch_tree(key)`, `remove_tree(key)`: a whole version.

`LocalStorage` is a directory (a volume shared by trainer and workers): a version appears by
one rename, the pointer is replaced under an exclusive lock (flock) by a rename. A directory
that cannot be read (any OSError but a key that does not exist: ESTALE or EIO from NFS,
EACCES, a symlink loop) raises `StoreUnavailableError`, as does the directory itself gone
once this storage has seen it (deleted, or its volume unmounted): that is a store lost, not
a store with nothing in it yet. `S3Storage`
is a bucket and prefix (`s3://bucket/prefix`), reached with boto3 (the `s3` extra) the AWS
way: credentials from the standard variables, a web-identity role on Kubernetes (IRSA, EKS
Pod Identity), or a profile; `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) for an
S3-compatible server such as MinIO or SeaweedFS. The pointer is replaced with a conditional
PUT (`If-Match` its ETag, `If-None-Match: *` when there is none), which S3 and the
S3-compatible servers answer 412 when another writer got there first. A version's objects are
all written before the pointer names it; readers follow the pointer, so they never see half
a model. A bucket that cannot be read (unreachable, or refusing the request) raises
`StoreUnavailableError`, not a refusal of the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from anomaly.model.errors import ArtifactError

S3_SCHEME = "s3://"


class StoreConflictError(ArtifactError):
    """Another writer changed the key since it was read (two training runs raced)."""


class StoreUnavailableError(ArtifactError):
    """The storage could not be reached, or refused the request (a server error, missing
    credentials or permissions); nothing is known to be wrong with the model."""


class Storage(Protocol):
    """The operations the model store needs; keys are '/'-separated, relative."""

    location: str  # for messages: a directory, or s3://bucket/prefix

    def child(self, key: str) -> Storage: ...

    def read(self, key: str) -> tuple[bytes, str] | None: ...

    def replace(self, key: str, data: bytes, tag: str | None) -> None: ...

    def append(self, key: str, line: str) -> None: ...

    def names(self, key: str) -> list[str]: ...

    def put_tree(self, local: Path, key: str) -> None: ...

    def fetch_tree(self, key: str) -> contextlib.AbstractContextManager[Path]: ...

    def remove_tree(self, key: str) -> None: ...

    def staging(self) -> contextlib.AbstractContextManager[Path]: ...


def open_storage(location: str | Path) -> Storage:
    """The storage at `location`: `s3://bucket[/prefix]`, or a directory."""
    text = str(location)
    if text.startswith(S3_SCHEME):
        from anomaly.model.s3 import S3Storage  # boto3 only where a store is on S3

        bucket, _, prefix = text[len(S3_SCHEME) :].partition("/")
        return S3Storage(bucket, prefix.strip("/"))
    return LocalStorage(Path(location))


def is_s3(location: str | Path) -> bool:
    return str(location).startswith(S3_SCHEME)


def content_tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStorage:
    """A directory; a version is a subdirectory, made visible by one rename.

    Reading, a key that does not exist is None (or no names); any other OSError, and the
    directory gone after it was seen here, is StoreUnavailableError."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self._root_seen = False  # the directory existed when this storage last looked

    def child(self, key: str) -> LocalStorage:
        return LocalStorage(self.root / key)

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:
            self._not_found(key, exc)
            return None
        except OSError as exc:
            raise self._unreadable(key, exc) from exc
        self._root_seen = True
        return data, content_tag(data)

    def replace(self, key: str, data: bytes, tag: str | None) -> None:
        with self._locked():
            found = self.read(key)
            if (found[1] if found else None) != tag:
                raise StoreConflictError(f"{self.root / key} was changed by another writer")
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                Path(tmp).replace(self.root / key)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.root)

    def append(self, key: str, line: str) -> None:
        with self._locked(), (self.root / key).open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def names(self, key: str) -> list[str]:
        try:
            with os.scandir(self.root / key) as entries:
                found = sorted(entry.name for entry in entries if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError) as exc:
            self._not_found(key, exc)
            return []
        except OSError as exc:
            raise self._unreadable(key, exc) from exc
        self._root_seen = True
        return found

    def put_tree(self, local: Path, key: str) -> None:
        """Move `local` (made by `staging`, on this filesystem) to `key`: one rename."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise ArtifactError(f"{target} already exists")
        local.rename(target)
        _fsync_dir(target.parent)

    @contextlib.contextmanager
    def fetch_tree(self, key: str) -> Iterator[Path]:
        """The version's own directory, read in place. A filesystem error while the caller
        reads it is StoreUnavailableError, not a refusal of the version: raised as it is, or
        as an ArtifactError caused by one (a file that does not exist stays a refusal: an
        incomplete artifact)."""
        try:
            yield self.root / key
        except StoreUnavailableError:
            raise
        except (ArtifactError, OSError) as exc:
            cause = filesystem_error(exc)
            if cause is None:
                raise
            raise self._unreadable(key, cause) from exc

    def remove_tree(self, key: str) -> None:
        """Renamed out of sight first, so no reader finds it half deleted under its name."""
        path = self.root / key
        if not path.exists():
            return
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
        path.rename(trash / path.name)
        shutil.rmtree(trash)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory on the store's filesystem (so that `put_tree` is a rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _not_found(self, key: str, exc: OSError) -> None:
        """`key` does not exist: nothing to say if the directory does, or was never seen
        here (a store nothing was published to yet); StoreUnavailableError if it has gone."""
        try:
            exists = self.root.is_dir()
        except OSError as err:
            raise self._unreadable(key, err) from err
        if exists:
            self._root_seen = True
        elif self._root_seen:
            raise StoreUnavailableError(
                f"model store {self.location} is gone (deleted, or its volume unmounted): {exc}"
            ) from exc

    def _unreadable(self, key: str, exc: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(f"model store {self.location} cannot be read ({key}): {exc}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def filesystem_error(exc: BaseException | None) -> OSError | None:
    """The filesystem error `exc` is or was caused by, unless a file that does not exist."""
    for _ in range(10):  # a chain is short; bounded all the same
        if exc is None:
            return None
        if isinstance(exc, OSError):
            return None if isinstance(exc, FileNotFoundError | NotADirectoryError) else exc
        exc = exc.__cause__ or exc.__context__
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
