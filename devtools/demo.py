"""The local demo: a simulated mixed fleet through the real broker, trainer and worker.

    python -m devtools.demo [--assets 8] [--upset-pumps 4] [--compressors 4] [--readings 400]
                            [--http-port 8000] [--review-port 8080] [--serve]

Starts the embedded broker, trains one named model per asset type on clean simulated readings
(python -m training: pumps, eight sensors, that stop now and then: the rule `speed < 100` says
when, on the faulted pumps' history; compressors, five of their own), starts a worker
(python -m worker) that routes each record to its type's model, sets a maintenance window on
the first pump (`anomaly-train window set`), streams readings with injected faults (one on each
of the first `--assets` pumps and on each compressor), a plant-wide upset mid-stream (a supply
sag that moves the `--upset-pumps` pumps after those together: devtools/simulator.py `Upset`),
a few malformed records, one pump sensor that drops out for a while, the first pump stopped for
its maintenance and the last faulted one stopped outside any window, prints alert episodes,
incidents (episodes of several assets that share a cause: anomaly/incidents.py), sensor
silences and stops as they happen, and ends with a summary: faults injected and detected (one
whose episode joined another's incident: said to have no page of its own), false alerts (pages
that match no fault nor the upset), the upset (how many of its pumps opened an episode, in how
many incidents, how many pages: the worker pages once per incident), the dropout, the stop and
the window. Then it writes the report of one episode (`anomaly-train report`) and starts the
review page (python -m review) behind a stand-in for the identity proxy
(devtools/identity_proxy.py, loopback only, user `demo`, a judge), and prints that episode's
page address once the page and its figure answer. Exits 0 when every fault was detected, the
upset was one incident of its pumps alone that paged once, neither stop paged, and the page
answered. `--serve` keeps everything up at the end until Ctrl-C, to open the page.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anomaly.kafka import make_producer
from anomaly.rules import Rules
from anomaly.settings import KafkaSettings, TopicSettings
from devtools import local_broker
from devtools.identity_proxy import IdentityProxy
from devtools.simulator import COMPRESSOR, Fault, Fleet, Stop, Upset, asset_name, timestamp
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
    incident: str | None = None  # the incident its page belongs to (its own id: it pages)

    @property
    def paged(self) -> bool:
        """It alerted: opened or released unheld (alone, or as a member of an incident)."""
        return self.suppressed is None

    @property
    def page(self) -> bool:
        """It paged someone, as the worker counts pages (anomaly_pages_total): it started
        paging as its incident's first member."""
        return self.paged and not self.instrument and self.incident == self.episode_id


@dataclass
class Silence:
    """A sensor_silent or sensor_resolve event read back from the alerts topic."""

    kind: str
    asset_id: str
    feature: str
    ts: datetime


@dataclass
class Told:
    """An incident event read back from the alerts topic: its members as (episode id, asset
    id), in the order they joined."""

    kind: str
    incident_id: str
    ts: datetime
    members: tuple[tuple[str, str], ...]
    open_members: int


@dataclass
class Stopped:
    """A stopped or started event read back from the alerts topic."""

    kind: str
    asset_id: str
    ts: datetime


@dataclass
class Heard:
    """What the alerts topic said, as the summary reads it."""

    opened: list[Seen] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    states: list[Stopped] = field(default_factory=list)
    incidents: list[Told] = field(default_factory=list)
    # each incident's members as its events name them (episode id -> asset id)
    members: dict[str, dict[str, str]] = field(default_factory=dict)


# One pump sensor drops out (null) for DROPOUT_READINGS readings, from 3/4 of the stream on;
# the worker fills it for STALE_AFTER_S seconds (one reading a second), then calls it silent.
DROPOUT_ASSET, DROPOUT_SENSOR, DROPOUT_READINGS, STALE_AFTER_S = "pump-01", "flow", 30, 10
# When a pump is not running (anomaly/states.py), recorded in the pump model.
STOPPED_WHEN = "speed < 100"
# The first pump is serviced in a maintenance window (its share of the stream) and stopped
# inside it; the last pump stops outside any window. Shares of the stream's readings.
SERVICE_WINDOW, SERVICE_STOP, OTHER_STOP = (0.70, 0.90), (0.72, 0.85), (0.75, 0.85)
# The plant upset (a supply sag on the pumps after the faulted ones), its share of the stream:
# mid-stream, while faults of other pumps are open.
UPSET_SPAN = (0.45, 0.60)
FEEDBACK = "sensor-alerts.verdicts"  # the verdicts the review page writes (its default)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--assets", type=int, default=8, help="pumps with a fault each")
    parser.add_argument(
        "--upset-pumps", type=int, default=4,
        help="pumps after those, with no fault, moved together by a plant upset (0: none)",
    )  # fmt: skip
    parser.add_argument("--compressors", type=int, default=4, help="compressors in the fleet")
    parser.add_argument("--readings", type=int, default=400, help="readings per pump streamed")
    parser.add_argument("--http-port", type=int, default=8000, help="the worker's metrics port")
    parser.add_argument("--review-port", type=int, default=8080, help="the review page's port")
    parser.add_argument(
        "--serve", action="store_true",
        help="keep the broker, the worker and the review page up at the end, until Ctrl-C",
    )  # fmt: skip
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
    page: subprocess.Popen[bytes] | None = None
    proxy: IdentityProxy | None = None
    try:
        say(f"broker ({what}) on {broker.bootstrap}, up in {time.monotonic() - started:.1f} s")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, session_timeout_ms=6000)
        topics = TopicSettings()
        create_topics(kafka, {topics.input: 4, topics.alerts: 1, topics.dead_letters: 1,
                              topics.calendar: 1, FEEDBACK: 1},
                      compacted=[topics.calendar])  # fmt: skip

        now = datetime.now(UTC).replace(microsecond=0)
        # the pumps' history holds stops: the model learns when they run, and its start-up.
        # It is the faulted pumps' alone: the upset's are of their type, served by its model
        # as a pump added later would be (their history would only make training longer).
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
        sag = _span(UPSET_SPAN, args.readings)
        upset = Upset(tuple(asset_name(args.assets + i) for i in range(args.upset_pumps)),
                      sag.start, sag.stop)  # fmt: skip
        fleets = [Fleet(args.assets + args.upset_pumps, seed=2, start=now, stops=stops,
                        upsets=(upset,) if upset.assets else ())]  # fmt: skip
        if args.compressors:
            fleets.append(Fleet(args.compressors, seed=2, kind=COMPRESSOR, start=now))
        faults = fleets[0].faults(args.readings)[: args.assets]  # the upset's pumps: none
        faults += [f for fleet in fleets[1:] for f in fleet.faults(args.readings)]
        dropout = range(args.readings * 3 // 4, args.readings * 3 // 4 + DROPOUT_READINGS)
        readings = args.readings * sum(fleet.n_assets for fleet in fleets)
        shaken = (f"a plant upset on {_names(upset.assets)} (readings {sag.start}-"
                  f"{sag.stop - 1}), " if upset.assets else "")  # fmt: skip
        say(f"streaming {readings} readings with {len(faults)} faults, {shaken}"
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

        heard = follow(kafka, topics, worker, sent)
        print()
        say(f"metrics: {base}/metrics (probes: {base}/livez, {base}/readyz)")
        for line in scrape(f"{base}/metrics"):
            print(f"    {line}")
        dropped = timedelta(seconds=dropout.start)
        rules = Rules()
        code = summary(faults, upset, now, heard.opened, rules)
        if upset.assets:
            code = code or (0 if print_upset(upset, sag, now, heard, rules) else 1)
        print_dropout(heard.silences, now + dropped,
                      now + dropped + timedelta(seconds=len(dropout)))  # fmt: skip
        quiet = print_stops(heard.opened, heard.states, now, (service_asset, service, window),
                            (other_asset, other))  # fmt: skip
        code = code or (0 if quiet else 1)
        chosen = report(broker.bootstrap, topics, workdir, faults, heard.opened)
        page = start_review(broker.bootstrap, topics, workdir, args.review_port)
        proxy = IdentityProxy(f"http://127.0.0.1:{args.review_port}", "demo", "anomaly-judges")
        if chosen is not None:
            code = code or (0 if show_page(proxy.url, chosen) else 1)
        if args.serve:
            say(f"serving until Ctrl-C: the review page {proxy.url} (through a stand-in for the "
                f"identity proxy, as user 'demo', a judge), metrics {base}/metrics")  # fmt: skip
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: clean up
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        return code
    finally:
        if proxy is not None:
            proxy.close()
        if page is not None and page.poll() is None:
            page.send_signal(signal.SIGTERM)
            page.wait(30)
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
            say(f"worker drained and exited with code {code}")
        broker.stop()
        say("broker stopped")


def follow(
    kafka: KafkaSettings, topics: TopicSettings, worker: subprocess.Popen[bytes], sent: int
) -> Heard:
    """Print alert events until the worker has committed all `sent` input records."""
    reader = TopicReader(kafka, topics.alerts)
    heard = Heard()
    deadline = time.monotonic() + 120
    caught_up_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for record in reader.poll(300):
                show(json.loads(record.value or b"{}"), heard)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            if committed_total(kafka, topics.group, topics.input) >= sent:
                caught_up_at = caught_up_at or time.monotonic()
                if time.monotonic() - caught_up_at > 1.0:  # alerts are flushed before commits
                    return heard
    finally:
        reader.close()
    raise RuntimeError("the worker did not catch up within 120 s")  # fmt: skip


def show(event: dict[str, Any], heard: Heard) -> None:
    """Print one event as it comes, and keep what the summary reads."""
    kind, ts = event["type"], event["ts"]
    if kind.startswith("incident_"):  # no asset: several assets' episodes, one cause
        show_incident(event, heard)
        return
    asset = event["asset_id"]
    opened, silences, states = heard.opened, heard.silences, heard.states
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
    held, episode, incident = event.get("suppressed"), event["episode_id"], event.get("incident")
    joined = _joined(heard.opened, episode, incident)  # whose incident it joined, not paging
    if kind == "open":
        opened.append(Seen(asset, parse(ts), episode, top, held, incident=incident))
        page = f"  (no page: {held})" if held else f"  (no page: {joined})" if joined else ""
        print(f"  OPEN     {asset} [{event['model']}]  {ts}  score {event['score']:.3g} > "
              f"{event['threshold']:.3g}  top: {top}{page}")  # fmt: skip
    elif kind == "suppress":
        opened.append(Seen(asset, parse(ts), episode, top, held))
        print(f"  SUPPRESS {asset}  {ts}  its page withdrawn: {held}")
    elif kind == "unsuppress":
        opened.append(Seen(asset, parse(ts), episode, top, None, released=True,
                           incident=incident))  # fmt: skip
        paged = f"no page: {joined}" if joined else "paged now"
        print(f"  PAGE     {asset}  {ts}  still open after {event['released']}: {paged}")
    elif kind == "quiet":
        print(f"  QUIET    {asset}  {ts}  back under since {event['ended_at']}: resolves after "
              "the hold unless it returns")  # fmt: skip
    elif kind == "resume":
        print(f"  RESUME   {asset}  {ts}  above again since {event['resumed_at']}: the same "
              "episode, no new page")  # fmt: skip
    else:
        print(f"  RESOLVE  {asset}  {ts}  {event['records']} records from "
              f"{event['started_at']}, peak {event['peak_score']:.3g}")  # fmt: skip


def show_incident(event: dict[str, Any], heard: Heard) -> None:
    """An incident event: its members' assets (listed on its open and resolve, one at a time
    by its updates), and what changed (one joined, one left)."""
    kind, ts, n, who = event["type"], event["ts"], event["size"], event["member_asset_id"]
    known = heard.members.setdefault(event["incident_id"], {})
    known.update((m["episode_id"], m["asset_id"]) for m in event.get("members", ()))
    known.setdefault(event["member"], who)
    if kind == "incident_resolve":
        said = f"over: its {n} episodes resolved"
    elif event["member_open"]:
        said = f"one cause: {n} episodes, one page ({who} joined)"
    else:
        said = f"{who} over: {event['open_members']} of its {n} episodes open"
    print(f"  INCIDENT {', '.join(known.values())}  {ts}  {said}")
    heard.incidents.append(Told(kind, event["incident_id"], parse(ts), tuple(known.items()),
                                event["open_members"]))  # fmt: skip


def _joined(opened: list[Seen], episode_id: str, incident: str | None) -> str | None:
    """What an episode that joined another's incident says (None: it is its own)."""
    if incident is None or incident == episode_id:
        return None
    first = next((s.asset_id for s in opened if s.episode_id == incident), None)
    return f"in {first}'s incident" if first else f"in incident {incident}"


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
) -> str | None:
    """The episode report of the first drift caught (else of the first episode), as a user
    would ask for it: `anomaly-train report EPISODE_ID`; the episode's id."""
    drifts = [f.asset_id for f in faults if f.kind == "drift"]
    chosen = next((s for s in opened if s.asset_id in drifts), opened[0] if opened else None)
    if chosen is None:
        return None
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
    return chosen.episode_id


def start_review(
    bootstrap: str, topics: TopicSettings, workdir: Path, port: int
) -> subprocess.Popen[bytes]:
    """The review page (`anomaly-review`) on the demo's topics and store, once ready."""
    env = {**os.environ, "REVIEW_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "REVIEW_TOPICS__INPUT": topics.input, "REVIEW_TOPICS__ALERTS": topics.alerts,
           "REVIEW_TOPICS__FEEDBACK": FEEDBACK, "REVIEW_STORE__PATH": str(workdir / "model-store"),
           "REVIEW_HTTP__HOST": "127.0.0.1", "REVIEW_HTTP__PORT": str(port)}  # fmt: skip
    log = (workdir / "review.log").open("wb")
    page = subprocess.Popen([sys.executable, "-m", "review", "run"], env=env, stdout=log,
                            stderr=log)  # fmt: skip
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 90,
                 "the review page to read the alerts", page)  # fmt: skip
    except BaseException:  # not left running
        page.kill()
        page.wait(30)
        raise
    return page


def show_page(url: str, episode_id: str) -> bool:
    """The reported episode's review page and its figure, as a browser would fetch them."""
    page = f"{url}episodes/{episode_id}"
    began = time.monotonic()
    try:
        with urllib.request.urlopen(page, timeout=30) as answer:
            shown = answer.status == 200 and "False alarm" in answer.read().decode()
        with urllib.request.urlopen(page + "/figure.png", timeout=30) as answer:
            figure = answer.read() if answer.headers["Content-Type"] == "image/png" else b""
    except (urllib.error.URLError, OSError) as exc:
        say(f"review page for {episode_id} failed: {exc}")
        return False
    say(f"review page for {episode_id}: {page} ({'shown' if shown else 'NOT shown'}, its figure "
        f"{len(figure)} bytes, both in {time.monotonic() - began:.2f} s)")  # fmt: skip
    return shown and bool(figure)


def summary(
    faults: list[Fault], upset: Upset, now: datetime, opened: list[Seen], rules: Rules
) -> int:
    grace = timedelta(seconds=rules.resolve_after + rules.open_after)
    opened = [s for s in opened if s.paged]  # what alerted (paged, or joined a page)
    matched = {s.episode_id for s in _upset_episodes(upset, now, opened, rules)}
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
            grouped = _joined(opened, caught.episode_id, caught.incident)
            if grouped:  # alike another's episode: grouped with it, paged with it only
                result += f" (no page of its own: {grouped})"
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


def _upset_episodes(upset: Upset, now: datetime, opened: list[Seen], rules: Rules) -> list[Seen]:
    """The alerts of the upset's pumps while it lasted (and the few readings an episode takes
    to open after)."""
    grace = timedelta(seconds=rules.resolve_after + rules.open_after)
    start, end = timestamp(upset.start, now), timestamp(upset.end - 1, now) + grace
    return [s for s in opened if s.paged and s.asset_id in upset.assets and start <= s.ts <= end]


def print_upset(upset: Upset, sag: range, now: datetime, heard: Heard, rules: Rules) -> bool:
    """What the worker made of the plant upset; True when its pumps' episodes were one
    incident, of theirs alone, that paged once."""
    mine = [s for s in _upset_episodes(upset, now, heard.opened, rules) if not s.instrument]
    pumps = sorted({s.asset_id for s in mine})
    incidents = sorted({s.incident or s.episode_id for s in mine})
    told = [t for t in heard.incidents if t.incident_id in incidents]
    members = sorted({a for t in told for _, a in t.members} | set(pumps))
    others = [a for a in members if a not in upset.assets]
    pages = sum(s.page for s in mine)
    events = _counted([t.kind for t in told]) or "no incident event"
    grouped = "one incident" if len(incidents) == 1 else f"{len(incidents)} incidents"
    also = f", also holding {', '.join(others)} (not in the upset)" if others else ""
    say(f"plant upset on {_names(upset.assets)} (readings {sag.start}-{sag.stop - 1}): "
        f"{len(pumps)}/{len(upset.assets)} pumps opened an episode, in {grouped} ({events})"
        f"{also}, {pages} page{'' if pages == 1 else 's'}")  # fmt: skip
    return len(pumps) == len(upset.assets) and len(incidents) == 1 and not others and pages == 1


def _counted(kinds: list[str]) -> str:
    """Incident events in the order they came, each run counted: `incident_open, 2
    incident_update`."""
    runs: list[tuple[str, int]] = []
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    return ", ".join(kind if n == 1 else f"{n} {kind}" for kind, n in runs)


def _names(assets: Sequence[str]) -> str:
    """`pump-08..pump-11` for a run of assets, the name alone for one."""
    return assets[0] if len(assets) == 1 else f"{assets[0]}..{assets[-1]}"


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
              "anomaly_values_filled_total", "anomaly_pages_total",
              "anomaly_incidents_open")  # fmt: skip
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
    condition: object, timeout_s: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with code {process.returncode} "
                               "(see its log)")  # fmt: skip
        time.sleep(0.2)  # polling a condition with a deadline
    raise RuntimeError(f"timed out waiting for {what}")


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
