"""Secrets stay secret: not in logs, error messages, metrics or dead letters."""

import json
import os
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from devtools import local_broker
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import committed_total
from tests.support.fakes import FakeRecord, FakeSink, FakeSource, as_records
from tests.support.kafka import produce, read, run_until_processed
from tests.support.models import REPO, Trained
from worker.errors import ExitCode
from worker.metrics import Metrics
from worker.runner import Worker
from worker.settings import WorkerSettings

SECRET = "hunter2-do-not-leak"
SASL = {
    "WORKER_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "WORKER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "WORKER_KAFKA__SASL_USERNAME": "worker",
    "WORKER_KAFKA__SASL_PASSWORD": SECRET,
    "WORKER_KAFKA__SSL_PASSWORD": SECRET,
}


def run(command: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("command", "prefix"),
    [([sys.executable, "-m", "worker"], "WORKER_"),
     ([sys.executable, "-m", "training", "fit"], "TRAINING_")],
)  # fmt: skip
def test_a_refused_setting_never_echoes_a_secret(command: list[str], prefix: str) -> None:
    # SASL without a mechanism: the check that refuses it sees the whole Kafka section
    env = {
        prefix + "KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        prefix + "KAFKA__SASL_PASSWORD": SECRET,
        prefix + "KAFKA__SSL_PASSWORD": SECRET,
    }
    code, output = run(command, env)  # fmt: skip
    assert code == ExitCode.BAD_SETTINGS
    assert "sasl_mechanism" in output  # the reason is given...
    assert SECRET not in output  # ...without the secret
    assert "**********" in output


def test_a_broker_refusing_the_credentials_gets_no_secret_into_the_logs(
    broker: LocalBroker, trained: Trained
) -> None:
    """Tansu offers no SASL: the worker fails to connect, says why, exits 7, and the secret
    appears nowhere in what it wrote (its settings are logged at start, masked)."""
    env = {**SASL, "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
           "WORKER_STORE__PATH": str(trained.store.root), "WORKER_HTTP__PORT": "0",
           "WORKER_KAFKA__REQUEST_TIMEOUT_MS": "2000"}  # fmt: skip
    code, output = run([sys.executable, "-m", "worker"], env, timeout=300)
    assert code == ExitCode.BROKER_UNAVAILABLE
    assert "Sasl" in output or "SASL" in output
    assert "**********" in output  # the logged settings, masked
    assert SECRET not in output


def test_metrics_and_dead_letters_carry_no_secret(trained: Trained) -> None:
    settings = WorkerSettings(
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
               "sasl_username": "worker", "sasl_password": SECRET, "ssl_password": SECRET},
        store={"path": trained.store.root}, http={"port": 0, "host": "127.0.0.1"},
    )  # fmt: skip
    scraped: list[str] = []

    class Scraping(FakeSource):
        def poll(self, timeout_ms: int, max_records: int) -> Sequence[FakeRecord]:
            assert worker.http is not None
            url = f"http://127.0.0.1:{worker.http.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                scraped.append(response.read().decode())
            return super().poll(timeout_ms, max_records)

    source = Scraping(as_records([(b"a", b"not json"), (b"b", b"{}")]))
    sink = FakeSink()
    worker = Worker(settings, Metrics(CollectorRegistry()), lambda s: source, lambda s: sink)
    assert worker.run(max_batches=1) == ExitCode.OK
    assert "anomaly_records_total" in scraped[0]
    assert SECRET not in scraped[0]
    assert len(sink.messages) == 2  # both records dead-lettered
    assert all(SECRET.encode() not in m.value for m in sink.messages)


def test_the_model_store_cannot_be_escaped_through_a_version_name(
    trained: Trained, tmp_path: Path
) -> None:
    from anomaly.model import ModelStore
    from anomaly.model.errors import ArtifactError

    outside = tmp_path / "outside"
    outside.mkdir()
    store = ModelStore(trained.store.root)
    for name in ("../outside", str(outside), "..", ".", "", "v1/../../outside", "v1\x00"):
        with pytest.raises(ArtifactError):
            store.load(name)
        with pytest.raises(ArtifactError):
            store.set_current(name)
    assert store.current_version() == trained.outcome.version


def test_every_dependency_has_an_upper_bound() -> None:
    """The next major release of anything is taken on purpose, after CI, never by surprise."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
    ours = [r for r in requirements if not r.startswith("sensor-anomaly[")]
    assert not [r for r in ours if "<" not in r and "==" not in r]


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA (PEM, for the client) and a broker keystore it signed (JKS, for Kafka 0.9)."""
    names = ("ca.pem", "ca.key", "broker.jks", "broker.csr", "broker.pem", "san.cnf")
    ca, key, jks, csr, cert, san = (directory / name for name in names)
    san.write_text("subjectAltName=IP:127.0.0.1\n")  # the client checks the broker's address
    store = ["-keystore", str(jks), "-storepass", "changeit"]
    for command in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(ca), "-days", "2", "-subj", "/CN=test-ca"],
        ["keytool", "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=127.0.0.1", "-validity", "2", "-storetype", "JKS", "-keypass",
         "changeit", *store],
        ["keytool", "-certreq", "-alias", "broker", "-file", str(csr), *store],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(san)],
        ["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca), *store],
        ["keytool", "-importcert", "-noprompt", "-alias", "broker", "-file", str(cert), *store],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return ca, jks


def test_the_worker_reads_and_publishes_over_tls(trained: Trained, tmp_path: Path) -> None:
    """Apache Kafka 0.9 with a TLS listener and a certificate from a CA made here: the worker,
    given that CA, consumes, publishes its alerts and dead letters and commits over TLS."""
    ca, jks = make_certificates(tmp_path)
    with local_broker.start_kafka09(tmp_path / "kafka", keystore=(jks, "changeit")) as broker:
        settings = WorkerSettings(
            kafka={"bootstrap_servers": broker.ssl_bootstrap, "security_protocol": "SSL",
                   "ssl_cafile": ca, "api_version": "0.9", "session_timeout_ms": 6000},
            topics={"input": "tls-in", "alerts": "tls-alerts", "dead_letters": "tls-dlq",
                    "group": "tls"},
            batch={"size": 100, "max_wait_ms": 50}, store={"path": trained.store.root},
            http={"port": 0, "host": "127.0.0.1"}, log_format="text",
        )  # fmt: skip
        fleet = Fleet(n_assets=3, seed=12)
        n = produce(settings, [*fleet.records(60, fleet.faults(60)), (b"x", b"not json")])
        metrics = run_until_processed(settings, n)
        assert committed_total(settings.kafka, "tls", "tls-in") == n
        assert metrics.registry.get_sample_value("anomaly_dead_letters_total",
                                                 {"reason": "not_json"}) == 1  # fmt: skip
        [dead] = read(settings, "tls-dlq", 1)
        assert json.loads(dead.value or b"")["reason"] == "not_json"
