"""What every benchmark shares: the machine's description, a trained model, the broker."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anomaly.kafka import make_producer
from anomaly.settings import KafkaSettings
from devtools import local_broker
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import create_topics
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    import kafka
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,  # the worker's (torch: the training job's)
        "kafka_python": kafka.__version__,
    }


def add_broker_option(
    parser: argparse.ArgumentParser, names: Sequence[str] = tuple(local_broker.BROKERS)
) -> None:
    """--broker: the local broker to measure on; Apache Kafka 4 unless it is given."""
    parser.add_argument(
        "--broker", choices=names, default="kafka4",
        help="the local broker the figures are measured on (kafka4: make kafka4; kafka09: "
        "make kafka09; tansu: in memory)",
    )  # fmt: skip


@contextlib.contextmanager
def started_broker(name: str, work: Path) -> Iterator[tuple[LocalBroker, dict[str, str]]]:
    """The local broker `name`, started under `work`, and its description for the results
    (what it is and the version kafka-python reports), printed once it is up."""
    with local_broker.start_named(name, work / "broker") as running:
        about = {"name": name, "what": local_broker.BROKERS[name] + ", loopback",
                 "version": local_broker.reported_version(running)}  # fmt: skip
        print(f"broker: {about['what']}; kafka-python reports version {about['version']}",
              flush=True)  # fmt: skip
        yield running, about


def broker_args(running: LocalBroker) -> list[str]:
    """The command-line arguments that point a benchmark role (benchmarks/roles.py) at it."""
    version = ["--api-version", running.api_version] if running.api_version else []
    return ["--bootstrap", running.bootstrap, *version]


def prepare_topics(running: LocalBroker, topic: str) -> KafkaSettings:
    """Create `topic` (4 partitions) and its alerts and dead-letter topics on `running`; the
    client settings for it. Kafka 0.9 cannot be asked: it makes them on first use (3 partitions)."""
    kafka = KafkaSettings(bootstrap_servers=running.bootstrap, api_version=running.api_version)
    if running.api_version is None:
        create_topics(kafka, {topic: 4, f"{topic}-alerts": 1, f"{topic}-dlq": 1})
    return kafka


def workdir(name: str) -> Path:
    """A scratch directory for one benchmark run, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def train_model(store: Path, window: int, epochs: int = 15, instruments: bool = True) -> None:
    """A model on clean simulator data (8 sensors, 10 pumps x 2,000 readings) in `store`
    (`instruments`: with the sensors' profile, anomaly/instruments.py, as by default).
    (The training job, torch with it, is imported here only: the worker processes the
    benchmarks start import this module and must weigh what a worker weighs.)"""
    from training.job import train
    from training.settings import TrainingSettings

    data = store.parent / f"train-w{window}.jsonl"
    with data.open("wb") as f:
        for _, value in Fleet(n_assets=10, seed=100).records(2000):
            f.write(value + b"\n")
    settings = TrainingSettings(
        data={"path": data}, model={"window": window, "epochs": epochs, "patience": 5},
        calibration={"target_fpr": 0.01}, store={"path": store}, log_level="WARNING",
        instruments={"enabled": instruments},
    )  # fmt: skip
    train(settings)


def produce(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = make_producer(kafka, linger_ms=20, batch_size=256 * 1024)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush()
    producer.close()
    return n


def fleet_records(n: int, assets: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """n simulator records over `assets` pumps, interleaved in time, with faults."""
    fleet = Fleet(n_assets=assets, seed=seed, start=datetime.now(UTC))
    per_asset = max(1, n // assets)
    return list(fleet.records(per_asset, fleet.faults(per_asset, first=per_asset // 2)))[:n]


def worker_settings(
    bootstrap: str,
    topic: str,
    group: str,
    store: Path,
    batch_size: int,
    api_version: str | None = None,
) -> WorkerSettings:
    return WorkerSettings(
        kafka={"bootstrap_servers": bootstrap, "session_timeout_ms": 6000,
               "api_version": api_version},
        topics={"input": topic, "alerts": f"{topic}-alerts", "dead_letters": f"{topic}-dlq",
                "group": group},
        batch={"size": batch_size, "max_wait_ms": 100},
        store={"path": store, "reload_interval_s": 3600}, http={"port": 0}, log_format="text",
        log_level="WARNING",
    )  # fmt: skip


def run_role(args: Sequence[str], timeout_s: float = 900) -> dict[str, Any]:
    """Run `python -m benchmarks.roles ARGS` in a fresh process; its last line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.roles", *args], cwd=REPO, capture_output=True,
        text=True, timeout=timeout_s,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"benchmark role {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measured_rate(out: Path, broker: str) -> float | None:
    """The worker's rate at window 1 in `out`/throughput.json, if it was measured on `broker`."""
    try:
        measured = json.loads((out / "throughput.json").read_text())
        if measured["broker"]["name"] == broker:
            return float(measured["windows"]["1"]["median"]["worker"]["records_per_s"])
    except (OSError, KeyError, TypeError, ValueError):
        pass
    return None


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (Linux's VmHWM). Not getrusage's ru_maxrss:
    on Linux that keeps the high-water mark of the process image exec replaced, so a role
    started from a benchmark that had trained a model with torch reported the benchmark's
    peak (800 MB and more) instead of its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)  # a watcher that looked more often would slow what it measures


def write_results(out: Path, name: str, results: dict[str, Any], table: str) -> None:
    """results/<name>.json, and the markdown table printed for docs/benchmarks.md (after the
    broker it was measured on, where there was one)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if "broker" in results:
        broker = results["broker"]
        print(f"\nbroker: {broker['what']} (kafka-python reports {broker['version']})\n")
    print(table)
    print(f"\nwritten: {out / (name + '.json')}")
