"""Secrets stay secret: not in logs, error messages, metrics or dead letters."""

import json
import os
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
    UserScramCredentialUpsertion,
)
from prometheus_client import CollectorRegistry

from anomaly.kafka import LoginRefusedError, client_config, make_consumer
from anomaly.settings import KafkaSettings
from devtools import local_broker
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import committed_total, create_topics
from tests.support.fakes import FakeRecord, FakeSink, FakeSource, as_records
from tests.support.http import get
from tests.support.kafka import produce, read, run_until_processed
from tests.support.models import REPO, Trained
from tests.support.process import Process
from tests.support.records import outlier
from tests.support.review import JUDGE, REVIEW, Review, request, review_env, token_of
from tests.support.waiting import wait_until
from training.kafka_range import KafkaUnavailableError, plan_range, read_planned
from worker.errors import ExitCode
from worker.metrics import Metrics
from worker.runner import Worker
from worker.settings import AlertSettings, WorkerSettings

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


Secured = tuple[LocalBroker, Path]  # the broker, and the CA that signed its certificate


# A SCRAM user made with the secured broker, whose password is not SECRET
KNOWN_USER, KNOWN_PASSWORD = "worker", uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Apache Kafka 4 as production clusters run it: TLS, SASL/SCRAM over TLS, and ACLs
    enforced (nothing allowed without one); its plaintext listener is the operator's door.
    Yielded once a SCRAM login over TLS has succeeded (user KNOWN_USER, no ACL): the
    listeners answer more than their ports, and a refusal seen then is one."""
    directory = tmp_path_factory.mktemp("secured")
    ca, jks = make_certificates(directory)
    with local_broker.start_kafka4(directory / "kafka", keystore=(jks, "changeit")) as broker:
        grant(broker, ca, KNOWN_USER, KNOWN_PASSWORD, {})
        yield broker, ca


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


def test_a_broker_refusing_the_credentials_stops_the_worker_naming_them_without_the_secret(
    secured: Secured, trained: Trained
) -> None:
    """Apache Kafka 4 refuses the SCRAM password of a user it knows: the worker exits 7 at the
    first refusal, saying so in its own words and naming the variables to check (not after
    its bootstrap window, set here longer than the test waits), and the secret appears nowhere
    in what it wrote (its settings are logged at start, masked)."""
    broker, ca = secured
    env = {**SASL, "WORKER_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "WORKER_KAFKA__SSL_CAFILE": str(ca), "WORKER_KAFKA__SASL_USERNAME": KNOWN_USER,
           "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.sasl_bootstrap,
           "WORKER_KAFKA__BOOTSTRAP_TIMEOUT_MS": "3600000",
           "WORKER_STORE__PATH": str(trained.root), "WORKER_HTTP__PORT": "0",
           "WORKER_LOG_FORMAT": "text"}  # fmt: skip
    code, output = run([sys.executable, "-m", "worker"], env, timeout=180)
    assert code == ExitCode.BROKER_UNAVAILABLE, output
    [fatal] = [line for line in output.splitlines() if "fatal:" in line]
    assert (
        f"fatal: the brokers ({broker.sasl_bootstrap}) refused the login of SASL user "
        f"'{KNOWN_USER}' (SCRAM-SHA-512)" in fatal
    )
    assert ("check WORKER_KAFKA__SASL_USERNAME, WORKER_KAFKA__SASL_PASSWORD and "
            "WORKER_KAFKA__SASL_MECHANISM") in fatal  # fmt: skip
    assert "**********" in output  # the logged settings, masked
    assert SECRET not in output


def test_a_certificate_not_trusted_stops_the_worker_naming_the_ca_setting(
    secured: Secured, trained: Trained, caplog: pytest.LogCaptureFixture
) -> None:
    """The TLS listener without the CA that signed its certificate: exit 7, naming
    WORKER_KAFKA__SSL_CAFILE (the bootstrap window bounds the test if it is not recognised)."""
    broker, _ = secured
    tls = {"bootstrap_servers": broker.ssl_bootstrap, "security_protocol": "SSL",
           "bootstrap_timeout_ms": 60_000}  # fmt: skip
    settings = on_tls(broker, tls, trained.root)
    assert Worker(settings, Metrics(CollectorRegistry())).run() == ExitCode.BROKER_UNAVAILABLE
    [fatal] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fatal")]
    assert fatal.startswith(f"fatal: the TLS handshake with {broker.ssl_bootstrap} failed: "
                            "certificate verify failed")  # fmt: skip
    assert fatal.endswith("check WORKER_KAFKA__SSL_CAFILE")


def test_a_worker_told_the_broker_version_names_a_refused_login_too(
    secured: Secured, trained: Trained, caplog: pytest.LogCaptureFixture
) -> None:
    """With WORKER_KAFKA__API_VERSION set the client meets the brokers only at its first
    request (the worker's look for its topics), not when it is made: the refusal is named
    there, not taken for topics that are missing (exit 10 after WORKER_TOPICS__WAIT_S)."""
    broker, ca = secured
    kafka = {**scram(broker, ca, KNOWN_USER, SECRET), "api_version": "3.0"}
    settings = on_tls(broker, kafka, trained.root)
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(
        update={"wait_s": 60.0})})  # fmt: skip
    assert Worker(settings, Metrics(CollectorRegistry())).run() == ExitCode.BROKER_UNAVAILABLE
    [fatal] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fatal")]
    assert f"refused the login of SASL user '{KNOWN_USER}' (SCRAM-SHA-512)" in fatal
    assert "check WORKER_KAFKA__SASL_USERNAME" in fatal


def test_the_training_job_names_a_refused_login_as_its_own_variables(secured: Secured) -> None:
    """The training job reads its range with the same client: a refused login is said with
    its TRAINING_ variables (its exit 5)."""
    broker, ca = secured
    kafka = KafkaSettings.model_validate(
        {**scram(broker, ca, KNOWN_USER, SECRET), "bootstrap_timeout_ms": 60_000}
    )
    with pytest.raises(KafkaUnavailableError) as refused:
        plan_range(kafka, "sensor-readings", 0, None, 10)
    assert f"refused the login of SASL user '{KNOWN_USER}' (SCRAM-SHA-512)" in str(refused.value)
    assert "check TRAINING_KAFKA__SASL_USERNAME, TRAINING_KAFKA__SASL_PASSWORD and" in str(
        refused.value
    )
    assert SECRET not in str(refused.value)


def test_metrics_and_dead_letters_carry_no_secret(trained: Trained) -> None:
    settings = WorkerSettings(
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
               "sasl_username": "worker", "sasl_password": SECRET, "ssl_password": SECRET},
        store={"path": trained.root}, http={"port": 0, "host": "127.0.0.1"},
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
    store = ModelStore(trained.root)
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


def operator(broker: LocalBroker) -> KafkaSettings:
    """The operator's connection: the plaintext listener, whose principal is the super user."""
    return KafkaSettings(bootstrap_servers=broker.bootstrap)


def on_tls(broker: LocalBroker, kafka: dict[str, object], store: Path) -> WorkerSettings:
    """A worker's settings with `kafka`, fresh topics (created by the operator) and group."""
    run = uuid.uuid4().hex[:8]
    settings = WorkerSettings(
        kafka={"session_timeout_ms": 6000, **kafka},
        topics={"input": f"in-{run}", "alerts": f"alerts-{run}", "dead_letters": f"dlq-{run}",
                "group": f"group-{run}"},
        batch={"size": 100, "max_wait_ms": 50}, store={"path": store},
        http={"port": 0, "host": "127.0.0.1"}, log_format="text",
    )  # fmt: skip
    t = settings.topics
    create_topics(operator(broker), {t.input: 3, t.alerts: 1, t.dead_letters: 1})
    return settings


def grant(
    broker: LocalBroker,
    ca: Path,
    user: str,
    password: str,
    acls: dict[tuple[ResourceType, str], str],
) -> None:
    """Create a SCRAM-SHA-512 user and allow it what `acls` says, as the operator; return
    once the user's login over TLS succeeds (the broker applies new credentials a moment
    after the controller took them, and a refused login ends a client at once)."""
    admin = KafkaAdminClient(**client_config(operator(broker)))
    try:
        upsert = UserScramCredentialUpsertion(user, "SCRAM-SHA-512", password)
        assert admin.alter_user_scram_credentials([upsert]) == {user: None}
        if acls:
            made = admin.create_acls([
                ACL(f"User:{user}", "*", getattr(ACLOperation, operation),
                    ACLPermissionType.ALLOW,
                    ResourcePattern(kind, name, ACLResourcePatternType.LITERAL))
                for (kind, name), operations in acls.items() for operation in operations.split()
            ])  # fmt: skip
            assert not made["failed"], made
    finally:
        admin.close()
    refusals: list[str] = []

    def logged_in() -> bool:
        try:
            make_consumer(KafkaSettings.model_validate(scram(broker, ca, user, password)),
                          None).close()  # fmt: skip
        except LoginRefusedError as exc:
            refusals.append(str(exc))
            return False
        return True

    wait_until(logged_in, 120, f"a SCRAM login of {user}", lambda: "\n".join(refusals[-3:]))


def worker_acls(
    settings: WorkerSettings, write_alerts: bool = True
) -> dict[tuple[ResourceType, str], str]:
    """What a worker's principal needs: read its input in its group, write its outputs."""
    t = settings.topics
    return {
        (ResourceType.TOPIC, t.input): "READ",
        (ResourceType.GROUP, t.group): "READ",
        (ResourceType.TOPIC, t.alerts): "WRITE" if write_alerts else "DESCRIBE",
        (ResourceType.TOPIC, t.dead_letters): "WRITE",
    }


def scram(broker: LocalBroker, ca: Path, user: str, password: str) -> dict[str, object]:
    return {"bootstrap_servers": broker.sasl_bootstrap, "security_protocol": "SASL_SSL",
            "ssl_cafile": ca, "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": user,
            "sasl_password": password}  # fmt: skip


def test_the_worker_reads_and_publishes_over_tls(secured: Secured, trained: Trained) -> None:
    """The TLS listener, its certificate from a CA made here: the worker, given that CA,
    consumes, publishes its alerts and dead letters and commits over TLS."""
    broker, ca = secured
    tls = {"bootstrap_servers": broker.ssl_bootstrap, "security_protocol": "SSL", "ssl_cafile": ca}
    settings = on_tls(broker, tls, trained.root)
    fleet = Fleet(n_assets=3, seed=12)
    n = produce(settings, [*fleet.records(60, fleet.faults(60)), (b"x", b"not json")])
    metrics = run_until_processed(settings, n)
    t = settings.topics
    assert committed_total(settings.kafka, t.group, t.input) == n
    assert metrics.registry.get_sample_value("anomaly_dead_letters_total",
                                             {"reason": "not_json"}) == 1  # fmt: skip
    [dead] = read(settings, t.dead_letters, 1)
    assert json.loads(dead.value or b"")["reason"] == "not_json"


def test_a_scram_user_with_its_acls_runs_the_worker_over_tls(
    secured: Secured, trained: Trained
) -> None:
    """SASL/SCRAM-SHA-512 over TLS, a user made here with only the ACLs docs/operations.md
    lists for a worker: it reads, alerts, dead-letters and commits, the producer idempotent."""
    broker, ca = secured
    user, password = f"worker-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    settings = on_tls(broker, scram(broker, ca, user, password), trained.root)
    grant(broker, ca, user, password, worker_acls(settings))
    fleet = Fleet(n_assets=3, seed=12)
    records = [*fleet.records(120, fleet.faults(120, first=40)), (b"x", b"not json")]
    as_operator = settings.model_copy(update={"kafka": operator(broker)})
    n = produce(as_operator, records)
    metrics = run_until_processed(settings, n)
    t = settings.topics
    assert committed_total(as_operator.kafka, t.group, t.input) == n
    opened = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    assert opened
    assert len(read(as_operator, t.alerts, int(opened))) >= opened
    assert len(read(as_operator, t.dead_letters, 1)) == 1


def test_a_principal_that_may_not_write_the_alerts_stops_the_worker_and_commits_nothing(
    secured: Secured, trained: Trained, caplog: pytest.LogCaptureFixture
) -> None:
    """The same user without WRITE on the alerts topic: the first alert is refused, the
    worker exits 11 at once (no wait grants an ACL) naming the topic, and commits nothing."""
    broker, ca = secured
    user, password = f"worker-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    settings = on_tls(broker, scram(broker, ca, user, password), trained.root)
    settings = settings.model_copy(update={"alerts": AlertSettings(open_after=1, onset_step=0)})
    grant(broker, ca, user, password, worker_acls(settings, write_alerts=False))
    as_operator = settings.model_copy(update={"kafka": operator(broker)})
    produce(as_operator, [(b"pump-00", outlier("pump-00", i)) for i in range(20)])
    worker = Worker(settings, Metrics(CollectorRegistry()))
    assert worker.run(idle_timeout_s=60) == ExitCode.NOT_AUTHORIZED
    t = settings.topics
    assert committed_total(as_operator.kafka, t.group, t.input) == 0
    [fatal] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fatal")]
    assert f"writing {t.alerts}" in fatal
    assert "TopicAuthorizationFailed" in fatal


def review_acls(settings: WorkerSettings, feedback: str) -> dict[tuple[ResourceType, str], str]:
    """What the review page's principal needs (docs/review.md): read the episodes and the
    input, read and write the verdicts; no group."""
    t = settings.topics
    return {
        (ResourceType.TOPIC, t.alerts): "READ DESCRIBE",
        (ResourceType.TOPIC, t.input): "READ DESCRIBE",
        (ResourceType.TOPIC, feedback): "READ WRITE DESCRIBE",
    }


@pytest.mark.parametrize("may_write", [True, False], ids=["its-acls", "no-write-on-verdicts"])
def test_the_review_page_runs_on_the_acls_docs_list_for_it(
    secured: Secured, trained: Trained, tmp_path: Path, may_write: bool
) -> None:
    """The review page as a SCRAM user over TLS with only the ACLs docs/review.md lists: it
    follows the episodes a worker raised, draws an episode's figure from the input and writes
    a verdict the operator reads back. Without Write on the verdicts, the page says the
    verdict was not recorded, and nothing is."""
    broker, ca = secured
    as_operator = on_tls(broker, {"bootstrap_servers": broker.bootstrap}, trained.root)
    feedback = f"{as_operator.topics.alerts}.verdicts"
    create_topics(operator(broker), {feedback: 1})
    fleet = Fleet(n_assets=3, seed=12)
    n = produce(as_operator, fleet.records(300, fleet.faults(300, first=100)))
    metrics = run_until_processed(as_operator, n)
    assert metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    user, password = f"review-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    acls = review_acls(as_operator, feedback)
    if not may_write:
        acls[(ResourceType.TOPIC, feedback)] = "READ DESCRIBE"
    grant(broker, ca, user, password, acls)
    login = {f"REVIEW_KAFKA__{name.upper()}": str(value)
             for name, value in scram(broker, ca, user, password).items()}  # fmt: skip
    page = Review(review_env(as_operator, feedback, **login), tmp_path / "review.log")
    try:
        status, listed, _ = request(page.url, JUDGE)
        assert status == 200
        episode_id = listed.split('href="/episodes/', 1)[1].split('"', 1)[0]
        where = f"{page.url}episodes/{episode_id}"
        status, figure, _ = request(where + "/figure.png", JUDGE)
        assert status == 200, figure
        _, shown, _ = request(where, JUDGE)
        status, said, _ = request(where + "/verdict", JUDGE,
                                  {"token": token_of(shown), "verdict": "confirmed"})  # fmt: skip
        planned = plan_range(operator(broker), feedback, 0, None, 100)
        recorded = [json.loads(r.value or b"") for r in read_planned(operator(broker), planned)]
        if may_write:
            assert status == 303, said
            assert [(v["episode_id"], v["by"]) for v in recorded] == [(episode_id, "alice")]
        else:
            assert status == 503
            assert "not recorded" in said
            assert recorded == []
        assert password not in page.process.log.read_text()
    finally:
        assert page.stop() == 0, page.process.state()


def test_the_review_page_names_a_refused_login_as_its_own_variables(
    secured: Secured, tmp_path: Path
) -> None:
    """A wrong password: the page is not ready, and says why naming REVIEW_ variables, never
    the secret; it keeps trying (a password fixed in the Secret is taken at its restart)."""
    broker, ca = secured
    login = {f"REVIEW_KAFKA__{name.upper()}": str(value)
             for name, value in scram(broker, ca, KNOWN_USER, SECRET).items()}  # fmt: skip
    env = {"REVIEW_HTTP__HOST": "127.0.0.1", "REVIEW_HTTP__PORT": str(local_broker.free_port()),
           **login}  # fmt: skip
    with Process([REVIEW], env, tmp_path / "review.log") as page:
        url = f"http://127.0.0.1:{env['REVIEW_HTTP__PORT']}/readyz"

        def said() -> bool:
            return "check REVIEW_KAFKA__" in get(url)[1]

        wait_until(said, 120, "the page to say why it is not ready", page.state)
        status, body = get(url)
        assert status == 503
        assert "REVIEW_KAFKA__SASL_PASSWORD" in body
        assert "TRAINING_" not in body
        page.popen.terminate()
        assert page.wait(30) == 0
        assert SECRET not in page.log.read_text()
