"""The processes the benchmarks measure, one per run so that CPU time and peak RSS are theirs.

    python -m benchmarks.roles ROLE --bootstrap B --topic T --group G --records N [...]

ceiling: a bare consumer reads N records; worker: the real worker until N are committed;
member: the real worker until SIGTERM; latency: the worker, timing each record from its
Kafka timestamp to its commit; memory: RSS idle, then after N/2 and N records; soak: the
latency role's timing, RSS and lag summed up every `--interval` seconds until N records.
Each prints one JSON line with its figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from anomaly.kafka import make_consumer
from anomaly.records import SourceRecord
from benchmarks.common import peak_rss_mb, wait_until, worker_settings
from worker.checkpoint import Handover
from worker.kafka_io import KafkaSource
from worker.metrics import OUTCOMES, STAGES, Metrics
from worker.runner import Worker
from worker.settings import BatchSettings, WorkerSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "role", choices=["ceiling", "worker", "member", "latency", "memory", "soak"]
    )
    for flag in ("--bootstrap", "--topic", "--group"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=BatchSettings().size)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--ready", type=Path)
    parser.add_argument("--max-assets", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--api-version", help="the broker's protocol version (0.9: Kafka 0.9)")
    args = parser.parse_args()
    roles = {"ceiling": ceiling, "worker": worker, "member": member, "latency": latency,
             "memory": memory, "soak": soak}  # fmt: skip
    out = roles[args.role](args)
    print(json.dumps(out))


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """A bare consumer with the worker's consumer settings: read and discard."""
    settings = worker_settings(
        args.bootstrap, args.topic, args.group, Path(), args.batch_size, args.api_version
    )
    consumer = make_consumer(settings.kafka, args.group, max_poll_records=args.batch_size)
    consumer.subscribe([args.topic])
    got, started, cpu = 0, 0.0, 0.0
    while got < args.records:
        batch = consumer.poll(timeout_ms=settings.batch.max_wait_ms, max_records=args.batch_size)
        n = sum(len(records) for records in batch.values())
        if n and not got:
            started, cpu = time.perf_counter(), time.process_time()
        got += n
    figures = _figures(got, time.perf_counter() - started, time.process_time() - cpu)
    consumer.close(autocommit=False)
    return figures


def _worker(args: argparse.Namespace, **batch: Any) -> tuple[Worker, WorkerSettings]:
    settings = worker_settings(
        args.bootstrap, args.topic, args.group, args.store, args.batch_size, args.api_version
    )
    if batch:
        settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(update=batch)})
    return Worker(settings, Metrics(CollectorRegistry()), serve_http=False), settings


def processed(worker: Worker) -> float:
    return sum(
        worker.metrics.registry.get_sample_value("anomaly_records_total", {"outcome": o}) or 0
        for o in OUTCOMES
    )


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """The real worker, end to end, until `records` records are committed."""
    w, _ = _worker(args)
    gc.freeze()
    thread = threading.Thread(target=w.run)
    thread.start()
    wait_until(lambda: processed(w) > 0, 120, "the first batch")
    started, cpu = time.perf_counter(), time.process_time()
    first = processed(w)  # the first batch is not timed: its poll started before `started`
    stages = stage_seconds(w)
    wait_until(lambda: processed(w) >= args.records, 1800, "every record")
    records = int(processed(w) - first)
    figures = _figures(records, time.perf_counter() - started, time.process_time() - cpu)
    # where the loop's time went (the worker's own metric), seconds per million records
    figures["stage_s_per_million"] = {
        stage: round((seconds - stages[stage]) / records * 1e6, 2)
        for stage, seconds in stage_seconds(w).items()
    }
    w.stop()
    thread.join()
    return figures


def stage_seconds(worker: Worker) -> dict[str, float]:
    """The seconds each stage of the loop took so far (anomaly_stage_seconds)."""
    registry = worker.metrics.registry
    return {stage: registry.get_sample_value("anomaly_stage_seconds_sum", {"stage": stage}) or 0.0
            for stage in STAGES}  # fmt: skip


def member(args: argparse.Namespace) -> dict[str, Any]:
    """One worker of a group, until SIGTERM (the real worker's own handler drains it)."""
    w, _ = _worker(args)
    gc.freeze()
    w.run()
    return {"records": processed(w), "peak_rss_mb": round(peak_rss_mb(), 1)}


class _Timed:
    """The worker's Kafka source, noting when each record's batch was committed (its commit
    sent, once its alerts were acknowledged), from the record's timestamp and, `in_worker`,
    from the poll that returned it."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.pending: list[tuple[str, float]] = []
        self.latencies: dict[str, list[float]] = {"steady": [], "burst": [], "in_worker": []}
        self.polled = 0.0

    def poll(self, timeout_ms: int, max_records: int) -> Sequence[SourceRecord]:
        records = self.source.poll(timeout_ms, max_records)
        self.polled = time.time()
        for r in records:
            key = r.key or b""
            phase = "burst" if key.startswith(b"burst") else "steady"
            stamp = getattr(r, "timestamp", -1)
            if stamp is None or stamp <= 0:  # a broker without timestamps (Kafka 0.9): the
                stamp = int(key.split(b"-", 2)[1]) / 1000  # producer put its clock (µs) in the key
            self.pending.append((phase, stamp / 1000))
        return records

    def handover(self) -> Handover | None:
        return self.source.handover()

    def calendar(self) -> list[tuple[bytes | None, bytes | None]]:
        return self.source.calendar()

    def commit(
        self, offsets: Mapping[tuple[str, int], int], states: Mapping[tuple[str, int], str]
    ) -> None:
        self.source.commit(offsets, states)  # sent once the batch's alerts are acknowledged
        now = time.time()
        for phase, produced in self.pending:
            self.latencies[phase].append(now - produced)
            if phase == "steady":
                self.latencies["in_worker"].append(now - self.polled)
        self.pending.clear()

    def settle(self) -> None:
        self.source.settle()

    def assigned(self) -> bool:
        return self.source.assigned()

    def keeps_state(self) -> bool:
        return self.source.keeps_state()

    def connected(self) -> bool:
        return self.source.connected()

    def lag(self) -> dict[tuple[str, int], int]:
        return self.source.lag()

    def keep_alive(self) -> None:
        self.source.keep_alive()

    def close(self) -> None:
        self.source.close()


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """Time from a record's production (its Kafka timestamp) to the commit of its decision."""
    timed: list[_Timed] = []

    def source(settings: WorkerSettings) -> _Timed:
        timed.append(_Timed(KafkaSource(settings)))
        return timed[0]

    settings = worker_settings(
        args.bootstrap, args.topic, args.group, args.store, args.batch_size, args.api_version
    )
    w = Worker(settings, Metrics(CollectorRegistry()), source=source, serve_http=False)
    gc.freeze()
    thread = threading.Thread(target=w.run)
    thread.start()
    wait_until(lambda: bool(timed) and timed[0].assigned(), 120, "partitions assigned")
    args.ready.write_text("ready")
    wait_until(
        lambda: sum(len(timed[0].latencies[p]) for p in ("steady", "burst")) >= args.records,
        1800,
        "records",
    )
    w.stop()
    thread.join()
    out: dict[str, Any] = {}
    for phase, values in timed[0].latencies.items():
        if values:
            ms = np.array(values) * 1000
            out[phase] = {"records": len(ms), "median_ms": round(float(np.median(ms)), 2),
                          "p95_ms": round(float(np.percentile(ms, 95)), 2),
                          "p99_ms": round(float(np.percentile(ms, 99)), 2)}  # fmt: skip
    return out


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """The latency role over a long run: every `interval` seconds, the latencies of the records
    committed in it (then forgotten, so that the bookkeeping cannot grow), RSS and lag."""
    timed: list[_Timed] = []

    def source(settings: WorkerSettings) -> _Timed:
        timed.append(_Timed(KafkaSource(settings)))
        return timed[0]

    settings = worker_settings(
        args.bootstrap, args.topic, args.group, args.store, args.batch_size, args.api_version
    )
    w = Worker(settings, Metrics(CollectorRegistry()), source=source, serve_http=False)
    gc.freeze()
    thread = threading.Thread(target=w.run)
    thread.start()
    wait_until(lambda: bool(timed) and timed[0].assigned(), 120, "partitions assigned")
    args.ready.write_text("ready")
    started, samples, total, quiet = time.monotonic(), [], 0, 0
    while total < args.records and quiet < 4:
        time.sleep(args.interval)  # the sampling period, not synchronisation
        latencies = timed[0].latencies
        values, latencies["steady"], latencies["in_worker"] = latencies["steady"], [], []
        total += len(values)
        quiet = 0 if values else quiet + 1
        ms = np.array(values or [np.nan]) * 1000
        samples.append({
            "t_s": round(time.monotonic() - started), "records": len(values),
            "records_per_s": round(len(values) / args.interval),
            "median_ms": round(float(np.median(ms)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "rss_mb": round(_rss_mb(), 1),
            "lag": sum(timed[0].lag().values()),
        })  # fmt: skip
        print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
    w.stop()
    thread.join()
    return {"samples": samples, "records": total, "processed": processed(w)}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """RSS idle with a model loaded, then after `records` records of distinct assets."""
    w, _ = _worker(args, max_assets=args.max_assets)
    gc.freeze()
    thread = threading.Thread(target=w.run)
    thread.start()
    wait_until(lambda: w.processor.model is not None and w.health.partitions_assigned, 120,
               "a loaded, assigned worker")  # fmt: skip
    idle = _rss_mb()
    args.ready.write_text("ready")
    marks = {}
    for step in (args.records // 2, args.records):
        wait_until(lambda s=step: processed(w) >= s, 1800, f"{step} records")
        marks[str(step)] = {"rss_mb": round(_rss_mb(), 1), "assets": len(w.processor.assets)}
    w.stop()
    thread.join()
    return {"idle_rss_mb": round(idle, 1), "after": marks, "peak_rss_mb": round(peak_rss_mb(), 1)}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _figures(records: int, seconds: float, cpu_s: float) -> dict[str, Any]:
    if records <= 0 or seconds <= 0:
        raise SystemExit("nothing was timed: use more records than one batch")
    return {
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1),
        "cpu_s_per_million": round(cpu_s / records * 1e6, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    main()
