"""Decision latency: from producing a record to the commit of its decision.

    python -m benchmarks.latency [--rate R] [--seconds 20] [--burst 20000]
                                 [--broker kafka4|tansu]

At a fixed offered rate (default: half of the worker's rate in benchmarks/results/
throughput.json, window 1), then under a burst sent all at once. A record's latency runs from
its Kafka timestamp (stamped by the producer) to the commit sent once its batch's alerts are
acknowledged; "of which from poll to commit" is the part spent in the worker, from the poll
that returned the record. Median, p95 and p99. On Apache Kafka 4 unless --broker says otherwise
(not Kafka 0.9: it keeps no timestamps).
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
from benchmarks.common import (
    REPO,
    add_broker_option,
    broker_args,
    machine,
    measured_rate,
    prepare_topics,
    started_broker,
    train_model,
    wait_until,
    workdir,
    write_results,
)  # fmt: skip
from devtools.simulator import Fleet


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency")
    parser.add_argument("--rate", type=float, help="records/s (default: half the measured max)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser, ("kafka4", "tansu"))
    args = parser.parse_args()
    measured = measured_rate(args.out, args.broker)
    if args.rate is None and measured is None:
        print(f"no throughput on {args.broker} in {args.out}/throughput.json: 10,000 records/s")
    rate = args.rate or (measured / 2 if measured else 10_000.0)
    work = workdir("latency")
    store = work / "store"
    train_model(store, window=1)
    steady = int(rate * args.seconds)
    with started_broker(args.broker, work) as (broker, about):
        topic = "lat-" + uuid.uuid4().hex[:6]
        kafka = prepare_topics(broker, topic)
        ready = work / "ready"
        role = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.roles", "latency", *broker_args(broker),
             "--topic", topic, "--group", "lat", "--store", str(store),
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
    results = {"machine": machine(), "broker": about, "offered_rate": rate, "seconds": args.seconds,
               "burst": args.burst, **figures}  # fmt: skip
    rows = ["| load | records | median ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    labels = {"steady": f"{rate:.0f} rec/s", "in_worker": "of which from poll to commit",
              "burst": f"burst of {args.burst}"}  # fmt: skip
    for phase, label in labels.items():
        f = figures[phase]
        rows.append(f"| {label} | {f['records']} | {f['median_ms']} | {f['p95_ms']} |"
                    f" {f['p99_ms']} |")  # fmt: skip
    write_results(args.out, "latency", results, "\n".join(rows))


if __name__ == "__main__":
    main()
