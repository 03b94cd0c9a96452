"""The model store's storage on a bucket of S3 or an S3-compatible server (the protocol and
its guarantees: anomaly/model/storage.py), reached with boto3 (the `s3` extra)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anomaly.model.errors import ArtifactError
from anomaly.model.storage import (
    S3_SCHEME,
    StoreConflictError,
    StoreUnavailableError,
)


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
