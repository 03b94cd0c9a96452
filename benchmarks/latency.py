"""Decision latency: from producing a record to the commit of its decision.

    python -m benchmarks.latency [--rate R] [--seconds 20] [--burst 20000]

At a fixed offered rate (default: half of the worker's rate in benchmarks/results/
throughput.json, window 1), then under a burst sent all at once. A record's latency runs from
its Kafka timestamp (stamped by the producer) to the commit that follows the publishing of
its batch's alerts. Median, p95 and p99.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from anomaly.kafka import make_producer
from anomaly.settings import KafkaSettings
from benchmarks.common import REPO, machine, train_model, wait_until, workdir, write_results
from devtools import local_broker
from devtools.simulator import Fleet
from devtools.topics import create_topics


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency")
    parser.add_argument("--rate", type=float, help="records/s (default: half the measured max)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rate = args.rate or _half_max(args.out)
    work = workdir("latency")
    store = work / "store"
    train_model(store, window=1)
    steady = int(rate * args.seconds)
    with local_broker.start() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
        topic = "lat-" + uuid.uuid4().hex[:6]
        create_topics(kafka, {topic: 4, f"{topic}-alerts": 1, f"{topic}-dlq": 1})
        ready = work / "ready"
        role = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.roles", "latency", "--bootstrap",
             broker.bootstrap, "--topic", topic, "--group", "lat", "--store", str(store),
             "--records", str(steady + args.burst), "--ready", str(ready)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(ready.exists, 120, "the worker")
        fleet = Fleet(n_assets=args.assets, seed=9)
        # made before the clock starts: the producer's own CPU competes with the worker's
        records = iter(list(fleet.records(max(1, (steady + args.burst) // args.assets + 1))))
        producer = make_producer(kafka, linger_ms=5)
        start, sent, tick = time.perf_counter(), 0, 0.005
        while sent < steady:  # paced in 5 ms ticks: by time t, rate * t records were sent
            due = min(steady, int((time.perf_counter() - start) * rate) + 1)
            for _ in range(due - sent):
                key, value = next(records)
                producer.send(topic, key=b"steady-" + key, value=value)
            sent = due
            time.sleep(tick)  # pacing the offered load, not synchronising
        producer.flush()
        for _ in range(args.burst):
            key, value = next(records)
            producer.send(topic, key=b"burst-" + key, value=value)
        producer.flush()
        producer.close()
        out, _ = role.communicate(timeout=600)
        figures = json.loads(out.strip().splitlines()[-1])
    results = {"machine": machine(), "offered_rate": rate, "seconds": args.seconds,
               "burst": args.burst, **figures}  # fmt: skip
    rows = ["| load | records | median ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    for phase in ("steady", "burst"):
        f = figures[phase]
        label = f"{rate:.0f} rec/s" if phase == "steady" else f"burst of {args.burst}"
        rows.append(f"| {label} | {f['records']} | {f['median_ms']} | {f['p95_ms']} |"
                    f" {f['p99_ms']} |")  # fmt: skip
    write_results(args.out, "latency", results, "\n".join(rows))


def _half_max(out: Path) -> float:
    try:
        measured = json.loads((out / "throughput.json").read_text())
        return float(measured["windows"]["1"]["median"]["worker"]["records_per_s"]) / 2
    except (OSError, KeyError, ValueError):
        print("no benchmarks/results/throughput.json: offering 10,000 records/s")
        return 10_000.0


if __name__ == "__main__":
    main()
