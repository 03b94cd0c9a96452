"""The local demo: a simulated fleet of pumps through the real broker, trainer and worker.

    python -m devtools.demo [--assets 8] [--readings 400] [--http-port 8000]

Starts the embedded broker, trains a model on clean simulated readings (python -m training),
starts a worker (python -m worker), streams readings with injected faults (and a few
malformed records), prints alert episodes as they open and resolve, and ends with a summary
of faults injected, faults detected and false alerts. Exits 0 when every fault was detected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from anomaly.kafka import make_producer
from anomaly.rules import Rules
from anomaly.settings import KafkaSettings, TopicSettings
from devtools import local_broker
from devtools.simulator import Fault, Fleet
from devtools.topics import TopicReader, committed_total, create_topics

MALFORMED = [
    b"not json at all",
    b'{"asset_id": "pump-00", "ts": "2026-11-21T10:00:00Z"}',
    b'{"asset_id": "pump-00", "ts": "2026-11-21T10:00:00Z", "values": {"pressure": NaN}}',
    b"\xff\xfe\xfd",
]


@dataclass
class Seen:
    """An open event read back from the alerts topic."""

    asset_id: str
    ts: datetime
    episode_id: str
    top: str


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--assets", type=int, default=8, help="pumps in the fleet")
    parser.add_argument("--readings", type=int, default=400, help="readings per pump streamed")
    parser.add_argument("--http-port", type=int, default=8000, help="the worker's metrics port")
    parser.add_argument("--workdir", type=Path, default=Path("demo"))
    args = parser.parse_args(argv)

    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    say(f"working in {workdir}/ (model store, training data, worker log)")
    broker = local_broker.start(log=workdir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        say(f"broker (Tansu, in memory) on {broker.bootstrap}")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, session_timeout_ms=6000)
        topics = TopicSettings()
        create_topics(kafka, {topics.input: 4, topics.alerts: 1, topics.dead_letters: 1})

        now = datetime.now(UTC).replace(microsecond=0)
        history = Fleet(args.assets, seed=1, start=now - timedelta(days=1))
        data = workdir / "training.jsonl"
        with data.open("wb") as f:
            for _, record in history.records(1500):
                f.write(record + b"\n")
        say(f"training on {1500 * args.assets} clean readings of {args.assets} pumps ({data})")
        fit = subprocess.run(
            [sys.executable, "-m", "training", "fit", "--data", str(data),
             "--store", str(workdir / "model-store")],
            env={**os.environ, "TRAINING_LOG_LEVEL": "WARNING"},
        )  # fmt: skip
        if fit.returncode != 0:
            say("training failed")
            return 1

        env = {
            **os.environ,
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "WORKER_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "WORKER_STORE__PATH": str(workdir / "model-store"),
            "WORKER_HTTP__PORT": str(args.http_port),
            "WORKER_HTTP__HOST": "127.0.0.1",
            "WORKER_LOG_FORMAT": "text",
        }
        log = (workdir / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env,
                                  stdout=log, stderr=log)  # fmt: skip
        base = f"http://127.0.0.1:{args.http_port}"
        say(f"worker started (pid {worker.pid}); waiting for {base}/readyz")
        wait_for(lambda: http_ok(f"{base}/readyz"), 90, "the worker to become ready", worker)

        live = Fleet(args.assets, seed=2, start=now)
        faults = live.faults(args.readings)
        say(f"streaming {args.readings * args.assets} readings with {len(faults)} faults "
            f"and {len(MALFORMED)} malformed records")  # fmt: skip
        producer = make_producer(kafka)
        sent = 0
        for i, (key, record) in enumerate(live.records(args.readings, faults)):
            producer.send(topics.input, key=key, value=record)
            sent += 1
            if i == 50:
                for bad in MALFORMED:
                    producer.send(topics.input, key=b"pump-00", value=bad)
                    sent += 1
        producer.flush()
        producer.close()

        opened = follow(kafka, topics, worker, sent)
        print()
        say(f"metrics: {base}/metrics (probes: {base}/livez, {base}/readyz)")
        for line in scrape(f"{base}/metrics"):
            print(f"    {line}")
        return summary(faults, opened, Rules())
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
            say(f"worker drained and exited with code {code}")
        broker.stop()
        say("broker stopped")


def follow(
    kafka: KafkaSettings, topics: TopicSettings, worker: subprocess.Popen[bytes], sent: int
) -> list[Seen]:
    """Print alert events until the worker has committed all `sent` input records."""
    reader = TopicReader(kafka, topics.alerts)
    opened: list[Seen] = []
    deadline = time.monotonic() + 120
    caught_up_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for record in reader.poll(300):
                event = json.loads(record.value or b"{}")
                if event["type"].startswith("sensor_"):
                    state = "SILENT " if event["type"] == "sensor_silent" else "BACK   "
                    print(f"  {state}  {event['asset_id']}  {event['ts']}  {event['feature']}")
                    continue
                top = ", ".join(f"{f['feature']} {f['share']:.0%}" for f in event["top_features"])
                if event["type"] == "open":
                    opened.append(
                        Seen(event["asset_id"], parse(event["ts"]), event["episode_id"], top)
                    )
                    print(
                        f"  OPEN     {event['asset_id']}  {event['ts']}  score "
                        f"{event['score']:.3g} > {event['threshold']:.3g}  top: {top}"
                    )
                else:
                    print(
                        f"  RESOLVE  {event['asset_id']}  {event['ts']}  {event['records']} "
                        f"records from {event['started_at']}, peak {event['peak_score']:.3g}"
                    )
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            if committed_total(kafka, topics.group, topics.input) >= sent:
                caught_up_at = caught_up_at or time.monotonic()
                if time.monotonic() - caught_up_at > 1.0:  # alerts are flushed before commits
                    return opened
    finally:
        reader.close()
    raise RuntimeError("the worker did not catch up within 120 s")  # fmt: skip


def summary(faults: list[Fault], opened: list[Seen], rules: Rules) -> int:
    grace = timedelta(seconds=rules.resolve_after + rules.open_after)
    matched: set[str] = set()
    print()
    say(f"summary: {len(faults)} faults injected")
    for fault in faults:
        hits = [
            s for s in opened
            if s.asset_id == fault.asset_id and fault.start_ts <= s.ts <= fault.end_ts + grace
        ]  # fmt: skip
        matched.update(s.episode_id for s in hits)
        if hits:
            delay = (hits[0].ts - fault.start_ts).total_seconds()
            result = f"DETECTED after {delay:.0f} readings, top: {hits[0].top}"
        else:
            result = "MISSED"
        print(f"  {fault.asset_id}  {fault.kind:<18} on {fault.sensor:<12} "
              f"readings {fault.start}-{fault.end - 1}: {result}")  # fmt: skip
    false_alerts = [s for s in opened if s.episode_id not in matched]
    detected = sum(
        1 for f in faults
        if any(s.asset_id == f.asset_id and f.start_ts <= s.ts <= f.end_ts + grace for s in opened)
    )  # fmt: skip
    say(f"faults detected: {detected}/{len(faults)}; false alerts: {len(false_alerts)}")
    for s in false_alerts:
        print(f"  false alert: {s.asset_id} at {s.ts.isoformat()} top: {s.top}")
    return 0 if detected == len(faults) else 1


def scrape(url: str) -> list[str]:
    wanted = ("anomaly_records_total", "anomaly_alert_events_total", "anomaly_dead_letters_total",
              "anomaly_model_info", "anomaly_threshold ")  # fmt: skip
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return [
        line for line in text.splitlines()
        if line.startswith(wanted) and not line.endswith(" 0.0")
    ]  # fmt: skip


def http_ok(url: str) -> bool:
    """True when `url` answers 200 (False while nothing listens or it answers an error)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for(
    condition: object, timeout_s: float, what: str, worker: subprocess.Popen[bytes]
) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} (see its log)")
        time.sleep(0.2)  # polling a condition with a deadline
    raise RuntimeError(f"timed out waiting for {what}")


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
