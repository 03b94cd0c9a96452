"""Two worker processes in one consumer group against one, on the same records.

    python -m benchmarks.scaling [--records 300000] [--repeats 3] [--broker kafka4|tansu|kafka09]

Every run reads the same pre-produced topic with a fresh group. The rate is the records
committed by the group over the time from its first commit to its last, as seen from outside.
On Apache Kafka 4 unless --broker says otherwise.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka.structs import TopicPartition

from anomaly.kafka import make_consumer
from anomaly.settings import KafkaSettings
from benchmarks.common import (
    REPO,
    add_broker_option,
    broker_args,
    fleet_records,
    machine,
    median,
    prepare_topics,
    produce,
    started_broker,
    train_model,
    workdir,
    write_results,
)  # fmt: skip
from devtools.local_broker import LocalBroker


class CommitWatcher:
    """The group's committed offsets, read with one consumer ten times a second (a watcher
    that polled harder would take CPU from the workers it measures)."""

    def __init__(self, kafka: KafkaSettings, group: str, topic: str) -> None:
        self.consumer = make_consumer(kafka, group)
        self.parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]

    def committed(self) -> int:
        return sum(self.consumer.committed(tp) or 0 for tp in self.parts)

    def wait(self, condition: Callable[[int], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self.committed()):
            if time.monotonic() > deadline:
                raise TimeoutError("the group did not get there in time")
            time.sleep(0.1)  # sampling the progress, not synchronising

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def run_group(
    kafka: KafkaSettings, broker: LocalBroker, topic: str, store: Path, processes: int, n: int
) -> dict[str, Any]:
    group = f"scale-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, "-m", "benchmarks.roles", "member", *broker_args(broker),
               "--topic", topic, "--group", group, "--records", "0",
               "--store", str(store)]  # fmt: skip
    members = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    launched = time.perf_counter()
    watcher = CommitWatcher(kafka, group, topic)
    watcher.wait(lambda c: c > 0, 180)
    started, first = time.perf_counter(), watcher.committed()
    watcher.wait(lambda c: c >= n, 1800)
    seconds = time.perf_counter() - started
    watcher.close()
    if first >= n:  # all of it in the first commits (a tiny input): time it from the launch
        started, first, seconds = launched, 0, time.perf_counter() - launched
    shares = []
    for member in members:
        member.send_signal(signal.SIGTERM)
        out, _ = member.communicate(timeout=120)
        shares.append(json.loads(out.strip().splitlines()[-1])["records"])
    return {"processes": processes, "records_per_s": round((n - first) / max(seconds, 1e-9), 1),
            "seconds": round(seconds, 2), "records_per_process": shares}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser)
    args = parser.parse_args()
    work = workdir("scaling")
    store = work / "store"
    train_model(store, window=1)
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    with started_broker(args.broker, work) as (broker, about):
        topic = "scale-" + uuid.uuid4().hex[:6]
        kafka = prepare_topics(broker, topic)
        n = produce(kafka, topic, fleet_records(args.records, args.assets))
        for repeat in range(args.repeats):
            for processes in (1, 2):
                run = run_group(kafka, broker, topic, store, processes, n)
                runs[str(processes)].append(run)
                print(f"repeat {repeat + 1}: {processes} process(es) {run['records_per_s']:.0f}/s")
    one = median([r["records_per_s"] for r in runs["1"]])
    two = median([r["records_per_s"] for r in runs["2"]])
    results = {"machine": machine(), "broker": about, "records": n, "runs": runs,
               "median": {"one": one, "two": two, "two_over_one": round(two / one, 2)}}  # fmt: skip
    table = ("| processes | records/s (median) |\n|---|---|\n"
             f"| 1 | {one:.0f} |\n| 2 | {two:.0f} (x{two / one:.2f}) |")  # fmt: skip
    write_results(args.out, "scaling", results, table)


if __name__ == "__main__":
    main()
