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
from typing import Any, Protocol

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
        bucket, _, prefix = text[len(S3_SCHEME) :].partition("/")
        return S3Storage(bucket, prefix.strip("/"))
    return LocalStorage(Path(location))


def is_s3(location: str | Path) -> bool:
    return str(location).startswith(S3_SCHEME)


def _tag(data: bytes) -> str:
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
        return data, _tag(data)

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
            cause = _filesystem_error(exc)
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


class S3Storage:
    """A prefix in a bucket of S3 or an S3-compatible server."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        if not bucket:
            raise ArtifactError("an s3:// store location needs a bucket: s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix
        self.location = f"{S3_SCHEME}{bucket}/{prefix}".rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _s3_client()
        return self._client

    def child(self, key: str) -> S3Storage:
        return S3Storage(self.bucket, self._key(key), self._client)

    def read(self, key: str) -> tuple[bytes, str] | None:
        with self._errors(key):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return None
            return answer["Body"].read(), str(answer["ETag"])

    def replace(self, key: str, data: bytes, tag: str | None) -> None:
        condition = {"IfMatch": tag} if tag else {"IfNoneMatch": "*"}
        with self._errors(key):
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, **condition
                )
            except self.client.exceptions.ClientError as exc:
                if _code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                    raise StoreConflictError(
                        f"{self.location}/{key} was changed by another writer"
                    ) from exc
                raise

    def append(self, key: str, line: str) -> None:
        """Read, add the line, write back if unchanged; again if another writer came first."""
        for _ in range(20):
            found = self.read(key)
            data = (found[0] if found else b"") + line.encode() + b"\n"
            try:
                self.replace(key, data, found[1] if found else None)
                return
            except StoreConflictError:
                continue
        raise StoreConflictError(f"{self.location}/{key}: 20 writers in a row came first")

    def names(self, key: str) -> list[str]:
        prefix = self._key(key) + "/"
        found: set[str] = set()
        with self._errors(key):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    found.add(common["Prefix"][len(prefix) :].rstrip("/"))
        return sorted(found)

    def put_tree(self, local: Path, key: str) -> None:
        """Every file under `local`, the manifest last: a listing shows a version as
        incomplete until it is whole (readers follow the pointer, written after)."""
        files = sorted(p for p in local.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == "manifest.json")
        with self._errors(key):
            for path in files:  # one PUT each: a version's files are small (weights: KBs-MBs)
                name = path.relative_to(local).as_posix()
                with path.open("rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=f"{self._key(key)}/{name}",
                                           Body=body)  # fmt: skip

    @contextlib.contextmanager
    def fetch_tree(self, key: str) -> Iterator[Path]:
        """The objects under `key` downloaded into a temporary directory, removed after."""
        prefix = self._key(key) + "/"
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            with self._errors(key):
                for obj in self._objects(prefix):
                    target = Path(tmp) / obj[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    answer = self.client.get_object(Bucket=self.bucket, Key=obj)
                    target.write_bytes(answer["Body"].read())
            try:
                yield Path(tmp)
            except ArtifactError as exc:  # name the objects, not the temporary copy
                raise ArtifactError(str(exc).replace(tmp, f"{self.location}/{key}")) from exc

    def remove_tree(self, key: str) -> None:
        """The manifest first (the version reads as incomplete from then on), then the rest."""
        prefix = self._key(key) + "/"
        with self._errors(key):
            keys = sorted(self._objects(prefix), key=lambda k: not k.endswith("/manifest.json"))
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
            # servers with a filer behind them (SeaweedFS) keep the empty folder as a
            # prefix until its own key goes; on S3 there is no such key (a no-op)
            self.client.delete_object(Bucket=self.bucket, Key=prefix)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="staging-") as tmp:
            yield Path(tmp)

    def _objects(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Every failure to talk to the bucket as StoreUnavailableError, naming the key and
        the server's answer: a connection refused or timed out, a server error, and a refusal
        too (credentials, permissions, no such bucket), which an operator fixes while the
        worker keeps its model."""
        _boto3()  # installed, or a clear ArtifactError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except StoreConflictError:
            raise
        except ClientError as exc:
            raise StoreUnavailableError(
                f"model store {self.location}/{key} answered {_code(exc)}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"model store {self.location} unreachable: {exc}") from exc


def _filesystem_error(exc: BaseException | None) -> OSError | None:
    """The filesystem error `exc` is or was caused by, unless a file that does not exist."""
    for _ in range(10):  # a chain is short; bounded all the same
        if exc is None:
            return None
        if isinstance(exc, OSError):
            return None if isinstance(exc, FileNotFoundError | NotADirectoryError) else exc
        exc = exc.__cause__ or exc.__context__
    return None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ArtifactError(
            "an s3:// model store needs boto3: pip install 'sensor-anomaly[s3]'"
        ) from exc
    return boto3


# The variables that choose the client's credentials, region and endpoint; one client per
# set of values (a process normally has one; the tests switch identities).
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE",
)  # fmt: skip
_clients: dict[tuple[str | None, ...], Any] = {}


def _s3_client() -> Any:
    """A boto3 S3 client configured the AWS way (environment, web identity, profile), one per
    set of AWS variables, made once and shared (thread-safe; credentials refreshed by its
    session). Short timeouts and one retry: the worker looks at the store between batches,
    so an unreachable store may hold a batch back by at most about 2 x 2 s (connect) per
    reload interval."""
    key = tuple(os.environ.get(name) for name in _AWS_VARIABLES)
    if key not in _clients:
        boto3 = _boto3()
        from botocore.config import Config

        config = Config(connect_timeout=2, read_timeout=20,
                        retries={"max_attempts": 2, "mode": "standard"})  # fmt: skip
        _clients[key] = boto3.session.Session().client("s3", config=config)
    return _clients[key]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
