"""Apache Kafka 4 with a TLS listener that demands a client certificate (mutual TLS) and a
SASL_SSL one (SCRAM-SHA-512): the worker authenticated by its certificate, its principal
refused an ACL (exit 11, from a real process); the training job reading its range over each.

The certificates are made here (tests/support/tls.py); the client's key is encrypted, so
`..._SSL_PASSWORD` opens it. Resources with no ACL are open to every principal (the broker's
`allow.everyone.if.no.acl.found`): only what a test restricts is restricted.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
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
from kafka.errors import KafkaError

from anomaly.kafka import client_config, make_consumer
from anomaly.settings import KafkaSettings
from devtools import local_broker
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import committed_total, create_topics
from tests.support.kafka import fresh, produce
from tests.support.process import run_worker, worker_env
from tests.support.records import outlier
from tests.support.tls import STORE_PASSWORD, Pki, client_auth_required, make_pki
from tests.support.waiting import wait_until
from training.settings import TrainingSettings
from training.topic import read_topic
from worker.errors import ExitCode
from worker.settings import WorkerSettings

Secured = tuple[LocalBroker, Pki]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("mutual-tls")
    pki = make_pki(directory / "pki")
    keystore = (pki.keystore, STORE_PASSWORD)
    with local_broker.start_kafka4(directory / "kafka", keystore=keystore,
                                   overrides=client_auth_required(pki)) as broker:  # fmt: skip
        yield broker, pki


def test_the_tls_listener_refuses_a_client_without_a_certificate(secured: Secured) -> None:
    """The precondition of the tests below: a client that trusts the broker but shows no
    certificate of its own gets no further than the handshake."""
    broker, pki = secured
    context = ssl.create_default_context(cafile=str(pki.ca))
    assert broker.ssl_port is not None
    with (
        socket.create_connection(("127.0.0.1", broker.ssl_port), timeout=10) as raw,
        pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
    ):
        exchange(context.wrap_socket(raw, server_hostname="127.0.0.1"))


def exchange(tls: ssl.SSLSocket) -> None:
    """Send a few bytes and read one: TLS 1.3 delivers a refused handshake with the first read."""
    with tls:
        tls.sendall(b"\0\0\0\0")
        tls.recv(1)


def test_a_worker_known_by_its_certificate_commits_then_exits_11_on_a_refused_write(
    secured: Secured, store: Path, tmp_path: Path
) -> None:
    """`anomaly-worker` on the mutual-TLS listener (WORKER_KAFKA__SECURITY_PROTOCOL=SSL,
    ..._SSL_CAFILE, ..._SSL_CERTFILE, ..._SSL_KEYFILE, ..._SSL_PASSWORD): it reads and commits
    as the principal its certificate names; the alerts topic lets that principal describe it,
    not write it, so its first alert is refused: exit 11 naming the topic, nothing of that
    batch committed, the key's password nowhere in its output."""
    broker, pki = secured
    operator = KafkaSettings(bootstrap_servers=broker.bootstrap)  # plaintext: the super user
    _, topics = fresh(broker)
    t = WorkerSettings(topics=topics).topics
    create_topics(operator, {t.input: 3, t.alerts: 1, t.dead_letters: 1})
    allow(operator, pki.principal, ResourceType.TOPIC, t.alerts, ACLOperation.DESCRIBE)
    as_operator = WorkerSettings(
        kafka=operator, topics=topics, store={"path": store}, http={"port": 0}
    )
    n = produce(as_operator, Fleet(n_assets=3, seed=12).records(20))
    env = worker_env(as_operator) | {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": broker.ssl_bootstrap,
        "WORKER_KAFKA__SECURITY_PROTOCOL": "SSL",
        "WORKER_KAFKA__SSL_CAFILE": str(pki.ca),
        "WORKER_KAFKA__SSL_CERTFILE": str(pki.client_cert),
        "WORKER_KAFKA__SSL_KEYFILE": str(pki.client_key),
        "WORKER_KAFKA__SSL_PASSWORD": pki.key_password,
        "WORKER_ALERTS__OPEN_AFTER": "1",
        "WORKER_ALERTS__ONSET_STEP": "0",
    }
    with run_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: committed_total(operator, t.group, t.input) == n, 90,
                   f"{n} records committed over mutual TLS", worker.state)  # fmt: skip
        produce(as_operator, [(b"pump-00", outlier("pump-00", i)) for i in range(5)])
        assert worker.wait() == ExitCode.NOT_AUTHORIZED, worker.state()
    [fatal] = worker.said("fatal:", "ERROR")
    assert f"the brokers refuse this worker's principal writing {t.alerts}" in fatal
    assert "TopicAuthorizationFailed" in fatal
    assert committed_total(operator, t.group, t.input) == n
    assert pki.key_password not in worker.log.read_text()


@pytest.mark.parametrize("listener", ["mutual TLS", "SASL/SCRAM over TLS"])
def test_the_training_job_reads_its_range_over_a_secured_listener(
    secured: Secured, listener: str
) -> None:
    """TRAINING_KAFKA__* as the worker's: the job's range read over mutual TLS (its client
    certificate and encrypted key), or as a SCRAM-SHA-512 user made here."""
    broker, pki = secured
    operator = KafkaSettings(bootstrap_servers=broker.bootstrap)
    if listener == "mutual TLS":
        kafka: dict[str, object] = {
            "bootstrap_servers": broker.ssl_bootstrap, "security_protocol": "SSL",
            "ssl_cafile": pki.ca, "ssl_certfile": pki.client_cert,
            "ssl_keyfile": pki.client_key, "ssl_password": pki.key_password,
        }  # fmt: skip
    else:
        user, password = f"trainer-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        admin = KafkaAdminClient(**client_config(operator))
        try:
            upsert = UserScramCredentialUpsertion(user, "SCRAM-SHA-512", password)
            assert admin.alter_user_scram_credentials([upsert]) == {user: None}
        finally:
            admin.close()
        kafka = {
            "bootstrap_servers": broker.sasl_bootstrap, "security_protocol": "SASL_SSL",
            "ssl_cafile": pki.ca, "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": user,
            "sasl_password": password,
        }  # fmt: skip
        quick = KafkaSettings(**kafka, bootstrap_timeout_ms=2000)
        # the broker learns of new users asynchronously
        wait_until(lambda: logs_in(quick), 30, "the new user's first login")
    _, topics = fresh(broker)
    settings = TrainingSettings(kafka=kafka, topics={"input": topics["input"]},
                                data={"source": "kafka", "since": "1h"})  # fmt: skip
    create_topics(operator, {topics["input"]: 3})
    as_operator = WorkerSettings(kafka=operator, topics=topics)
    n = produce(as_operator, Fleet(n_assets=3, seed=7).records(40))
    history, summary = read_topic(settings, None, datetime.now(UTC))
    assert summary.read == n
    assert history.rows == n


def logs_in(kafka: KafkaSettings) -> bool:
    """Whether a client with these settings gets through to the brokers now."""
    try:
        make_consumer(kafka, None).close()
    except KafkaError:
        return False
    return True


def allow(
    operator: KafkaSettings,
    principal: str,
    kind: ResourceType,
    name: str,
    operation: ACLOperation,
) -> None:
    """An ACL, made by the operator: `principal` may do `operation` on the resource; now that
    the resource has an ACL, every other operation and principal is refused there."""
    admin = KafkaAdminClient(**client_config(operator))
    try:
        resource = ResourcePattern(kind, name, ACLResourcePatternType.LITERAL)
        made = admin.create_acls(
            [ACL(principal, "*", operation, ACLPermissionType.ALLOW, resource)]
        )
        assert not made["failed"], made
    finally:
        admin.close()
