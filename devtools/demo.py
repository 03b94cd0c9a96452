"""The local demo: a simulated mixed fleet through the real broker, trainer and worker.

    python -m devtools.demo [--assets 8] [--compressors 4] [--readings 400] [--http-port 8000]

Starts the embedded broker, trains one named model per asset type on clean simulated readings
(python -m training: pumps, eight sensors, that stop now and then: the rule `speed < 100` says
when; compressors, five of their own), starts a worker (python -m worker) that routes each
record to its type's model, sets a maintenance window on the first pump (`anomaly-train
window set`), streams readings with injected faults, a few malformed records, one pump sensor
that drops out for a while, the first pump stopped for its maintenance and the last one
stopped outside any window, prints alert episodes, sensor silences and stops as they happen,
and ends with a summary: faults injected and detected, false alerts (pages that match no
fault), the dropout, the stop and the window. Exits 0 when every fault was detected and
neither stop paged.
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
from typing import Any

from anomaly.kafka import make_producer
from anomaly.rules import Rules
from anomaly.settings import KafkaSettings, TopicSettings
from devtools import local_broker
from devtools.simulator import COMPRESSOR, Fault, Fleet, Stop, asset_name
from devtools.topics import TopicReader, committed_total, create_topics

MALFORMED = [
    b"not json at all",
    b'{"asset_id": "pump-00", "ts": "2026-11-21T10:00:00Z"}',
    b'{"asset_id": "pump-00", "ts": "2026-11-21T10:00:00Z", "values": {"pressure": NaN}}',
    b"\xff\xfe\xfd",
]


@dataclass
class Seen:
    """An open event read back from the alerts topic (`suppressed`: what held its page back),
    or a page released later (`unsuppress`)."""

    asset_id: str
    ts: datetime
    episode_id: str
    top: str
    suppressed: str | None = None
    released: bool = False
    instrument: bool = False  # a sensor_fault: a broken sensor, not a process episode

    @property
    def paged(self) -> bool:
        return self.suppressed is None


@dataclass
class Silence:
    """A sensor_silent or sensor_resolve event read back from the alerts topic."""

    kind: str
    asset_id: str
    feature: str
    ts: datetime


# One pump sensor drops out (null) for DROPOUT_READINGS readings, from 3/4 of the stream on;
# the worker fills it for STALE_AFTER_S seconds (one reading a second), then calls it silent.
DROPOUT_ASSET, DROPOUT_SENSOR, DROPOUT_READINGS, STALE_AFTER_S = "pump-01", "flow", 30, 10
# When a pump is not running (anomaly/states.py), recorded in the pump model.
STOPPED_WHEN = "speed < 100"
# The first pump is serviced in a maintenance window (its share of the stream) and stopped
# inside it; the last pump stops outside any window. Shares of the stream's readings.
SERVICE_WINDOW, SERVICE_STOP, OTHER_STOP = (0.70, 0.90), (0.72, 0.85), (0.75, 0.85)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--assets", type=int, default=8, help="pumps in the fleet")
    parser.add_argument("--compressors", type=int, default=4, help="compressors in the fleet")
    parser.add_argument("--readings", type=int, default=400, help="readings per pump streamed")
    parser.add_argument("--http-port", type=int, default=8000, help="the worker's metrics port")
    parser.add_argument("--workdir", type=Path, default=Path("demo"))
    parser.add_argument(
        "--broker", choices=["kafka4", "tansu"], default="tansu",
        help="Apache Kafka 4 (make kafka4; Java 17) or Tansu (in memory; keeps no alert "
        "state with the offsets, refuses older librdkafka clients)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    say(f"working in {workdir}/ (model store, training data, worker log)")
    started = time.monotonic()
    if args.broker == "kafka4":
        broker = local_broker.start_kafka4(workdir / "kafka")
        what = "Apache Kafka 4, KRaft, one node"
    else:
        broker = local_broker.start(log=workdir / "broker.log")
        what = "Tansu, in memory"
    worker: subprocess.Popen[bytes] | None = None
    try:
        say(f"broker ({what}) on {broker.bootstrap}, up in {time.monotonic() - started:.1f} s")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, session_timeout_ms=6000)
        topics = TopicSettings()
        create_topics(kafka, {topics.input: 4, topics.alerts: 1, topics.dead_letters: 1,
                              topics.calendar: 1}, compacted=[topics.calendar])  # fmt: skip

        now = datetime.now(UTC).replace(microsecond=0)
        # the pumps' history holds stops: the model learns when they run, and its start-up
        training_stops = tuple(Stop(asset_name(i), 300 + 200 * i, 360 + 200 * i)
                               for i in range(min(args.assets, 4)))  # fmt: skip
        types = [("pump", Fleet(args.assets, seed=1, start=now - timedelta(days=1),
                                stops=training_stops))]  # fmt: skip
        if args.compressors:
            types.append(("compressor", Fleet(args.compressors, seed=1, kind=COMPRESSOR,
                                              start=now - timedelta(days=1))))  # fmt: skip
        for name, history in types:
            data = workdir / f"training-{name}.jsonl"
            with data.open("wb") as f:
                for _, record in history.records(1500):
                    f.write(record + b"\n")
            n = history.n_assets
            say(f"training model {name!r} on {1500 * n} clean readings of {n} {name}s, "
                f"{len(history.features)} sensors ({data})")  # fmt: skip
            rule = ["--stopped-when", STOPPED_WHEN] if name == "pump" else []
            fit = subprocess.run(
                [sys.executable, "-m", "training", "fit", "--data", str(data),
                 "--store", str(workdir / "model-store"), "--model", name, *rule],
                env={**os.environ, "TRAINING_LOG_LEVEL": "WARNING"},
            )  # fmt: skip
            if fit.returncode != 0:
                say(f"training {name} failed")
                return 1

        env = {
            **os.environ,
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "WORKER_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "WORKER_STORE__PATH": str(workdir / "model-store"),
            "WORKER_HTTP__PORT": str(args.http_port),
            "WORKER_HTTP__HOST": "127.0.0.1",
            "WORKER_LOG_FORMAT": "text",
            "WORKER_MODELS__NAMES": json.dumps([name for name, _ in types]),
            "WORKER_MODELS__ROUTE_FIELD": "asset_type",
            "WORKER_SENSORS__STALE_AFTER_S": str(STALE_AFTER_S),
        }
        log = (workdir / "worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env,
                                  stdout=log, stderr=log)  # fmt: skip
        base = f"http://127.0.0.1:{args.http_port}"
        say(f"worker started (pid {worker.pid}); waiting for {base}/readyz")
        launched = time.monotonic()
        wait_for(lambda: http_ok(f"{base}/readyz"), 90, "the worker to become ready", worker)
        say(f"worker ready (model loaded, topics found, partitions assigned) in "
            f"{time.monotonic() - launched:.1f} s")  # fmt: skip

        service = _span(SERVICE_STOP, args.readings)
        other = _span(OTHER_STOP, args.readings)
        window = _span(SERVICE_WINDOW, args.readings)
        service_asset, other_asset = asset_name(0), asset_name(args.assets - 1)
        set_window(broker.bootstrap, topics, service_asset, now, window)
        stops = (Stop(service_asset, service.start, service.stop),
                 Stop(other_asset, other.start, other.stop))  # fmt: skip
        fleets = [Fleet(args.assets, seed=2, start=now, stops=stops)]
        if args.compressors:
            fleets.append(Fleet(args.compressors, seed=2, kind=COMPRESSOR, start=now))
        faults = [f for fleet in fleets for f in fleet.faults(args.readings)]
        dropout = range(args.readings * 3 // 4, args.readings * 3 // 4 + DROPOUT_READINGS)
        readings = args.readings * sum(fleet.n_assets for fleet in fleets)
        say(f"streaming {readings} readings with {len(faults)} faults, "
            f"{len(MALFORMED)} malformed records, {DROPOUT_ASSET}'s {DROPOUT_SENSOR} "
            f"sensor out for readings {dropout.start}-{dropout.stop - 1}, {service_asset} "
            f"stopped for its maintenance (readings {service.start}-{service.stop - 1}) and "
            f"{other_asset} stopped outside any window (readings {other.start}-"
            f"{other.stop - 1})")  # fmt: skip
        producer = make_producer(kafka)
        sent = 0
        streams = [fleet.records(args.readings, faults) for fleet in fleets]
        for i in range(args.readings):
            for stream, fleet in zip(streams, fleets, strict=True):
                for _ in range(fleet.n_assets):
                    key, record = next(stream)
                    if key == DROPOUT_ASSET.encode() and i in dropout:
                        values = json.loads(record)
                        values["values"][DROPOUT_SENSOR] = None
                        record = json.dumps(values).encode()
                    producer.send(topics.input, key=key, value=record)
                    sent += 1
            if i == 6:
                for bad in MALFORMED:
                    producer.send(topics.input, key=b"pump-00", value=bad)
                    sent += 1
        producer.flush()
        producer.close()

        opened, silences, states = follow(kafka, topics, worker, sent)
        print()
        say(f"metrics: {base}/metrics (probes: {base}/livez, {base}/readyz)")
        for line in scrape(f"{base}/metrics"):
            print(f"    {line}")
        dropped = timedelta(seconds=dropout.start)
        code = summary(faults, opened, Rules())
        print_dropout(silences, now + dropped, now + dropped + timedelta(seconds=len(dropout)))
        quiet = print_stops(opened, states, now, (service_asset, service, window),
                            (other_asset, other))  # fmt: skip
        code = code or (0 if quiet else 1)
        report(broker.bootstrap, topics, workdir, faults, opened)
        return code
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
            say(f"worker drained and exited with code {code}")
        broker.stop()
        say("broker stopped")


@dataclass
class Stopped:
    """A stopped or started event read back from the alerts topic."""

    kind: str
    asset_id: str
    ts: datetime


def follow(
    kafka: KafkaSettings, topics: TopicSettings, worker: subprocess.Popen[bytes], sent: int
) -> tuple[list[Seen], list[Silence], list[Stopped]]:
    """Print alert events until the worker has committed all `sent` input records."""
    reader = TopicReader(kafka, topics.alerts)
    opened: list[Seen] = []
    silences: list[Silence] = []
    states: list[Stopped] = []
    deadline = time.monotonic() + 120
    caught_up_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for record in reader.poll(300):
                show(json.loads(record.value or b"{}"), opened, silences, states)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            if committed_total(kafka, topics.group, topics.input) >= sent:
                caught_up_at = caught_up_at or time.monotonic()
                if time.monotonic() - caught_up_at > 1.0:  # alerts are flushed before commits
                    return opened, silences, states
    finally:
        reader.close()
    raise RuntimeError("the worker did not catch up within 120 s")  # fmt: skip


def show(
    event: dict[str, Any], opened: list[Seen], silences: list[Silence], states: list[Stopped]
) -> None:
    """Print one event as it comes, and keep what the summary reads."""
    kind, asset, ts = event["type"], event["asset_id"], event["ts"]
    if kind in ("sensor_fault", "sensor_fault_resolve"):
        said = "FAULT  " if kind == "sensor_fault" else "FIXED  "
        print(f"  {said}  {asset}  {ts}  {event['feature']} {event['fault']} (instrumentation: "
              f"reads {event['value']:g})")  # fmt: skip
        if kind == "sensor_fault":
            what = f"{event['feature']} {event['fault']}"
            opened.append(Seen(asset, parse(ts), f"{asset}/{what}/{ts}", what, instrument=True))
        return
    if kind.startswith("sensor_"):
        state = "SILENT " if kind == "sensor_silent" else "BACK   "
        print(f"  {state}  {asset}  {ts}  {event['feature']}")
        silences.append(Silence(kind, asset, event["feature"], parse(ts)))
        return
    if kind in ("stopped", "started"):
        more = f"  (start-up: {event['grace_s']:g} s not scored)" if kind == "started" else ""
        print(f"  {kind.upper():<8} {asset}  {ts}  {event['stopped_when']}{more}")
        states.append(Stopped(kind, asset, parse(ts)))
        return
    top = ", ".join(f"{f['feature']} {f['share']:.0%}" for f in event["top_features"])
    held = event.get("suppressed")
    if kind == "open":
        opened.append(Seen(asset, parse(ts), event["episode_id"], top, held))
        page = f"  (no page: {held})" if held else ""
        print(f"  OPEN     {asset} [{event['model']}]  {ts}  score {event['score']:.3g} > "
              f"{event['threshold']:.3g}  top: {top}{page}")  # fmt: skip
    elif kind == "suppress":
        opened.append(Seen(asset, parse(ts), event["episode_id"], top, held))
        print(f"  SUPPRESS {asset}  {ts}  its page withdrawn: {held}")
    elif kind == "unsuppress":
        opened.append(Seen(asset, parse(ts), event["episode_id"], top, None, released=True))
        print(f"  PAGE     {asset}  {ts}  still open after {event['released']}: paged now")
    elif kind == "quiet":
        print(f"  QUIET    {asset}  {ts}  back under since {event['ended_at']}: resolves after "
              "the hold unless it returns")  # fmt: skip
    elif kind == "resume":
        print(f"  RESUME   {asset}  {ts}  above again since {event['resumed_at']}: the same "
              "episode, no new page")  # fmt: skip
    else:
        print(f"  RESOLVE  {asset}  {ts}  {event['records']} records from "
              f"{event['started_at']}, peak {event['peak_score']:.3g}")  # fmt: skip


def set_window(
    bootstrap: str, topics: TopicSettings, asset: str, start: datetime, readings: range
) -> None:
    """The maintenance window over the asset's `readings`, set as an engineer does."""
    begin, end = (start + timedelta(seconds=r) for r in (readings.start, readings.stop))
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "TRAINING_TOPICS__CALENDAR": topics.calendar,
           "TRAINING_LOG_LEVEL": "WARNING"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "training", "window", "set", f"{asset}-service", "--assets",
         asset, "--start", _wall(begin), "--end", _wall(end), "--note", "impeller change",
         "--by", "demo"], env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"anomaly-train window set failed: {done.stderr.strip()}")
    say(f"maintenance window (anomaly-train window set): {done.stdout.strip()}")


def report(
    bootstrap: str, topics: TopicSettings, workdir: Path, faults: list[Fault], opened: list[Seen]
) -> None:
    """The episode report of the first drift caught (else of the first episode), as a user
    would ask for it: `anomaly-train report EPISODE_ID`."""
    drifts = [f.asset_id for f in faults if f.kind == "drift"]
    chosen = next((s for s in opened if s.asset_id in drifts), opened[0] if opened else None)
    if chosen is None:
        return
    env = {**os.environ, "TRAINING_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "TRAINING_TOPICS__INPUT": topics.input, "TRAINING_TOPICS__ALERTS": topics.alerts,
           "TRAINING_LOG_LEVEL": "WARNING"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "training", "report", chosen.episode_id, "--store",
         str(workdir / "model-store"), "--out", str(workdir)], env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode == 0:
        say(f"episode report (anomaly-train report {chosen.episode_id}): {done.stdout.split()[-2]}")
    else:
        say(f"episode report failed: {done.stderr.strip().splitlines()[-1:]}")


def summary(faults: list[Fault], opened: list[Seen], rules: Rules) -> int:
    grace = timedelta(seconds=rules.resolve_after + rules.open_after)
    opened = [s for s in opened if s.paged]  # what paged someone
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
            caught = hits[0]
            how = (f"as instrumentation: {caught.top}" if caught.instrument
                   else f"as a process fault, top: {caught.top}")  # fmt: skip
            result = f"DETECTED after {delay:.0f} readings {how}"
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
        what = "instrumentation" if s.instrument else "top"
        print(f"  false alert: {s.asset_id} at {s.ts.isoformat()} {what}: {s.top}")
    return 0 if detected == len(faults) else 1


def print_dropout(silences: list[Silence], start: datetime, end: datetime) -> None:
    """What the worker said of the sensor that dropped out, and how soon."""
    mine = [s for s in silences if (s.asset_id, s.feature) == (DROPOUT_ASSET, DROPOUT_SENSOR)]
    silent = [s for s in mine if s.kind == "sensor_silent"]
    back = [s for s in mine if s.kind == "sensor_resolve" and s.ts >= end]
    said = (
        f"SILENT after {(silent[0].ts - start).total_seconds():.0f} readings"
        if silent else "never said silent"
    )  # fmt: skip
    again = (
        f"BACK at its first reading again ({back[0].ts.isoformat()})"
        if back and back[0].ts == end else "not said back"
    )  # fmt: skip
    say(f"sensor dropout: {DROPOUT_ASSET} {DROPOUT_SENSOR} out for "
        f"{(end - start).total_seconds():.0f} readings (filled for up to {STALE_AFTER_S} s): "
        f"{said}, {again}")  # fmt: skip


def print_stops(
    opened: list[Seen],
    states: list[Stopped],
    now: datetime,
    service: tuple[str, range, range],
    other: tuple[str, range],
) -> bool:
    """What the worker said of the two stops; True when neither paged anyone."""
    quiet = True
    asset, stop, window = service
    pages = [s for s in opened if s.asset_id == asset and s.paged
             and now + timedelta(seconds=window.start) <= s.ts]  # fmt: skip
    held = [s for s in opened if s.asset_id == asset and s.suppressed]
    said = [s.kind for s in states if s.asset_id == asset]
    quiet &= not pages
    say(f"maintenance: {asset} stopped in its window (readings {window.start}-{window.stop - 1}"
        f"): said {' then '.join(said) or 'nothing'}; {len(pages)} pages, {len(held)} held back "
        "(opened or withdrawn); its records are left out of the next training")  # fmt: skip
    asset, stop = other
    said = [f"{s.kind} at reading {(s.ts - now).total_seconds():.0f}" for s in states
            if s.asset_id == asset]  # fmt: skip
    pages = [s for s in opened if s.asset_id == asset and s.paged
             and now + timedelta(seconds=stop.start) <= s.ts]  # fmt: skip
    quiet &= not pages
    say(f"stop: {asset} stopped outside any window (readings {stop.start}-{stop.stop - 1}): "
        f"said {', '.join(said) or 'nothing'}; {len(pages)} pages")  # fmt: skip
    return quiet


def _span(shares: tuple[float, float], readings: int) -> range:
    return range(int(shares[0] * readings), int(shares[1] * readings))


def _wall(ts: datetime) -> str:
    """A UTC time as the wall clock a window set in UTC reads."""
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat()


def scrape(url: str) -> list[str]:
    wanted = ("anomaly_records_total", "anomaly_alert_events_total", "anomaly_dead_letters_total",
              "anomaly_model_info", "anomaly_threshold{", "anomaly_scored_total",
              "anomaly_values_filled_total")  # fmt: skip
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
