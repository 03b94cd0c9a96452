"""Soak: a long run at a steady high rate; RSS, latency and lag over time, nothing lost.

    python -m benchmarks.soak [--rate R] [--minutes 10] [--interval 30]
                              [--broker kafka4|tansu|kafka09]

Offers `rate` records/s (default: 80% of the worker's rate in benchmarks/results/
throughput.json, window 1, measured on the same broker) for `minutes`, paced in 5 ms ticks
from a pool of simulator records made before the clock starts (2,000 pumps, cycled). The
worker runs in its own process (benchmarks/roles.py soak) and reports, every `interval`
seconds, the records committed in it, their latency from the producer's timestamp to the
commit (median, p99), its RSS and its lag; beside them the rate actually offered and how long
records waited in the producer's buffer (part of the latency, and the sign of a machine that
cannot offer the load).
At the end: every record produced was committed (the group's offsets against the count sent).
The broker's RSS is sampled too (Tansu keeps everything in memory). On Apache Kafka 4 unless
--broker says otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

from anomaly.kafka import make_producer
from anomaly.settings import KafkaSettings
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
from devtools.topics import committed_total

POOL = 200_000  # records made up front and cycled


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--rate", type=float, help="records/s (default: 80%% of the measured max)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_broker_option(parser)
    args = parser.parse_args()
    measured = measured_rate(args.out, args.broker)
    if args.rate is None and measured is None:
        raise SystemExit(f"no throughput on {args.broker} in {args.out}/throughput.json: "
                         "give --rate")  # fmt: skip
    rate = args.rate or 0.8 * (measured or 0.0)
    total = int(rate * args.minutes * 60)
    work = workdir("soak")
    store = work / "store"
    train_model(store, window=1)
    fleet = Fleet(n_assets=args.assets, seed=11)
    pool = list(fleet.records(POOL // args.assets))
    with started_broker(args.broker, work) as (broker, about):
        topic = "soak-" + uuid.uuid4().hex[:6]
        kafka = prepare_topics(broker, topic)
        ready = work / "ready"
        role = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.roles", "soak", *broker_args(broker),
             "--topic", topic, "--group", "soak", "--store", str(store), "--records", str(total),
             "--ready", str(ready), "--interval", str(args.interval)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(ready.exists, 120, "the worker")
        broker_rss: list[float] = []
        sampler = threading.Thread(
            target=_sample_rss, args=(broker.process.pid, args.interval, broker_rss), daemon=True
        )
        sampler.start()
        print(f"offering {rate:,.0f} records/s for {args.minutes} minutes ({total:,} records)",
              flush=True)  # fmt: skip
        sent, seconds, offered = _offer(kafka, topic, pool, rate, total, args.interval,
                                        stamp_keys=broker.api_version is not None)  # fmt: skip
        out, _ = role.communicate(timeout=args.minutes * 60 + 900)
        figures = json.loads(out.strip().splitlines()[-1])
        committed = committed_total(kafka, "soak", topic)
    samples = figures["samples"]
    for sample, rss in zip(samples, broker_rss, strict=False):
        sample["broker_rss_mb"] = rss
    for sample, producer in zip(samples, offered, strict=False):
        sample["offered_per_s"] = producer["records_per_s"]
        sample["producer_queue_ms"] = producer["queue_ms_avg"]
    steady = samples[1:-1] or samples  # the first and last intervals are partly idle
    results = {
        "machine": machine(),
        "broker": about,
        "offered_rate": round(rate),
        "achieved_offered_rate": round(sent / seconds),
        "minutes": args.minutes,
        "produced": sent,
        "committed": committed,
        "lost": sent - committed,
        "processed": figures["processed"],
        "rss_mb": {"first": steady[0]["rss_mb"], "last": steady[-1]["rss_mb"],
                   "max": max(s["rss_mb"] for s in samples)},
        "p99_ms": {"first": steady[0]["p99_ms"], "last": steady[-1]["p99_ms"],
                   "max": max(s["p99_ms"] for s in steady)},
        "samples": samples,
    }  # fmt: skip
    rows = [
        "| t (s) | offered/s | committed/s | median ms | p99 ms | producer queue ms | worker "
        "RSS MB | lag | broker RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        rows.append(f"| {s['t_s']} | {s.get('offered_per_s', '')} | {s['records_per_s']:,} |"
                    f" {s['median_ms']} | {s['p99_ms']} | {s.get('producer_queue_ms', '')} |"
                    f" {s['rss_mb']} | {s['lag']:,} | {s.get('broker_rss_mb', '')} |")  # fmt: skip
    rows.append(
        f"\noffered {results['achieved_offered_rate']:,} records/s (asked {round(rate):,}); "
        f"produced {sent:,}, committed {committed:,}, lost {sent - committed:,}"
    )
    write_results(args.out, "soak", results, "\n".join(rows))


def _offer(
    kafka: KafkaSettings,
    topic: str,
    pool: list[tuple[bytes, bytes]],
    rate: float,
    total: int,
    interval: float,
    stamp_keys: bool,
) -> tuple[int, float, list[dict[str, float]]]:
    """Send `total` records at `rate`, paced in 5 ms ticks: (records sent, seconds taken, and
    every `interval` seconds the rate sent and how long records waited in the producer's
    buffer before they went to the broker: time that counts in the measured latency).

    `stamp_keys`: the broker keeps no timestamps (Kafka 0.9), so the send time (µs) goes into
    the key, and the partition is chosen from the pump's id as the key would have chosen it.
    """
    producer = make_producer(kafka, linger_ms=5)
    partitions = len(producer.partitions_for(topic)) if stamp_keys else 0
    chosen = [zlib.crc32(key) % partitions if partitions else None for key, _ in pool]
    start, sent, tick, n = time.perf_counter(), 0, 0.005, len(pool)
    samples: list[dict[str, float]] = []
    next_sample, sent_then = start + interval, 0
    while sent < total:  # by time t, rate * t records were sent
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        for i in range(sent, due):
            key, value = pool[i % n]
            if stamp_keys:
                stamped = b"steady-%d-" % (time.time_ns() // 1000) + key
                producer.send(topic, key=stamped, value=value, partition=chosen[i % n])
            else:
                producer.send(topic, key=b"steady-" + key, value=value)
        sent = due
        if now >= next_sample:
            queue = (producer.metrics() or {}).get("producer-metrics", {})
            samples.append({  # kafka-python records these in seconds (monotonic clock)
                "records_per_s": round((sent - sent_then) / interval),
                "queue_ms_avg": round(1000 * float(queue.get("record-queue-time-avg", 0)), 1),
                "queue_ms_max": round(1000 * float(queue.get("record-queue-time-max", 0)), 1),
            })  # fmt: skip
            next_sample, sent_then = next_sample + interval, sent
        time.sleep(tick)  # pacing the offered load, not synchronising
    producer.flush()
    seconds = time.perf_counter() - start
    producer.close()
    return sent, seconds, samples


def _sample_rss(pid: int, interval: float, out: list[float]) -> None:
    while True:
        time.sleep(interval)  # the sampling period
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out.append(round(int(line.split()[1]) / 1024, 1))


if __name__ == "__main__":
    main()
