"""The pods' read-only root filesystem, for real: the worker and the training job run in a mount
namespace where the code, the virtual environment, $HOME and their inputs are read-only; only
the declared volumes stay writable (/tmp, and the model store for the training job)."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import simulator
from devtools.local_broker import LocalBroker
from devtools.topics import committed_total, create_topics
from tests.support.kafka import produce
from tests.support.models import REPO, Trained, write_csv
from tests.support.waiting import wait_until
from worker.settings import WorkerSettings

REFUSED_WRITES = ("Read-only file system", "Permission denied", "Traceback")


def read_only(command: list[str], paths: list[Path]) -> list[str]:
    """`command` in a private mount namespace where `paths` are read-only (for root too)."""
    mounts = " && ".join(
        f"mount --bind {shlex.quote(str(p))} {shlex.quote(str(p))} && "
        f"mount -o remount,bind,ro {shlex.quote(str(p))}"
        for p in paths
    )
    return ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]


def private_mounts() -> bool:
    """Whether this machine lets a process make a private mount namespace and mount in it
    (root with CAP_SYS_ADMIN and unshare: CI's machine; not an unprivileged container)."""
    if shutil.which("unshare") is None:
        return False
    probe = read_only(["true"], [REPO])  # what the tests do, in a namespace of its own
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


# Off CI a machine without them skips; on CI (CI=true) the skip fails (tests/support/ci.py).
pytestmark = pytest.mark.skipif(
    not private_mounts(), reason="a private read-only mount needs root, unshare and mount"
)


def locked_down() -> list[Path]:
    return [REPO, Path(sys.prefix), Path.home()]


def test_training_writes_only_to_its_store(tmp_path: Path) -> None:
    data_dir, store = tmp_path / "data", tmp_path / "store"
    data_dir.mkdir()
    store.mkdir()
    write_csv(data_dir / "clean.csv", simulator.clean_rows(2000, seed=4))
    data = str(data_dir / "clean.csv")
    command = [sys.executable, "-m", "training", "fit", "--data", data, "--timestamp-column",
               "timestamp", "--store", str(store), "--epochs", "3"]  # fmt: skip
    done = subprocess.run(read_only(command, [*locked_down(), data_dir]), cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [w for w in REFUSED_WRITES if w in done.stderr], done.stderr[-3000:]
    assert (store / "current").read_text().strip()


def test_the_worker_runs_on_a_read_only_tree_and_store(
    broker: LocalBroker, trained: Trained, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained.root, store)
    topic = f"ro-{os.getpid()}-{tmp_path.name}"
    env = {
        **os.environ,
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "WORKER_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "WORKER_TOPICS__INPUT": topic,
        "WORKER_TOPICS__ALERTS": topic + "-alerts",
        "WORKER_TOPICS__DEAD_LETTERS": topic + "-dlq",
        "WORKER_TOPICS__GROUP": topic,
        "WORKER_STORE__PATH": str(store),
        "WORKER_HTTP__PORT": "0",
    }
    settings = WorkerSettings(kafka={"bootstrap_servers": broker.bootstrap},
                              topics={"input": topic, "alerts": topic + "-alerts",
                                      "dead_letters": topic + "-dlq", "group": topic})  # fmt: skip
    create_topics(settings.kafka, {topic: 2, topic + "-alerts": 1, topic + "-dlq": 1})
    fleet = simulator.Fleet(n_assets=4, seed=11)
    n = produce(settings, [*fleet.records(100, fleet.faults(100)), (b"x", b"not json")])
    log = tmp_path / "worker.log"  # a file, not a pipe nobody reads until the worker exits
    with log.open("wb") as out:
        worker = subprocess.Popen(
            read_only([sys.executable, "-m", "worker"], [*locked_down(), store]),
            cwd=REPO, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        wait_until(lambda: committed_total(settings.kafka, topic, topic) >= n, 120,
                   "every record committed")  # fmt: skip
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log.read_text(errors="replace")
    assert not [w for w in REFUSED_WRITES if w in output], output[-3000:]
