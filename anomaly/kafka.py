"""The Kafka client both apps build on (kafka-python): connection, codecs, reading a poll.

Every compression codec Kafka defines is read (gzip, snappy, lz4, zstd): `check_codecs` proves
it at start, and a batch the client still cannot decode raises UnreadableBatchError naming
where it lies (`poll_records`), never a bare traceback. A login the brokers refuse (SASL
credentials or mechanism, a TLS handshake that fails) raises LoginRefusedError at once, naming
the settings to check, rather than a timeout once the bootstrap window has passed
(`make_consumer`, `make_producer`). Each app turns these errors into its own exit codes.
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedCodecError,
    UnsupportedSaslMechanismError,
)
from kafka.net.compat import KafkaNetClient
from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from anomaly import settings
from anomaly.records import SourceRecord
from anomaly.settings import KafkaSettings


class CodecUnavailableError(Exception):
    """A compression codec Kafka defines cannot be read by this installation."""


class UnreadableBatchError(Exception):
    """The client cannot decode a fetched batch (an unknown codec, a corrupt batch): none of
    its records can be read. `topic`, `partition`, `offset` say where (None: unknown)."""

    def __init__(
        self, message: str, topic: str | None, partition: int | None, offset: int | None
    ) -> None:
        super().__init__(message)
        self.topic, self.partition, self.offset = topic, partition, offset


class LoginRefusedError(KafkaError):
    """The brokers refused the client's login (its SASL credentials or mechanism) or the TLS
    handshake failed (a certificate not trusted, a listener speaking another protocol): a
    setting to fix, not brokers that are away, so no wait helps. `refusal` says what happened,
    `fields` the KafkaSettings fields to check."""

    def __init__(self, refusal: str, fields: tuple[str, ...]) -> None:
        super().__init__(refusal)
        self.refusal, self.fields = refusal, fields

    def advice(self, env_prefix: str) -> str:
        """The refusal and the variables to check, e.g. WORKER_KAFKA__SASL_PASSWORD."""
        names = [settings.env_name(("kafka", field), env_prefix) for field in self.fields]
        listed = " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
        return f"{self.refusal}: check {listed}"

    def __str__(self) -> str:
        return f"{self.refusal}: check the Kafka settings {', '.join(self.fields)}"


# Kafka's compression codecs: their id in a batch's attributes, the message formats (magic)
# a broker may serve them in, and what gives kafka-python each one. Kafka 0.8-0.9 frame lz4
# with a wrong header checksum (magic 0), which kafka-python mends with xxhash.
CODECS: dict[str, tuple[int, tuple[int, ...], str]] = {
    "gzip": (1, (0, 1, 2), "Python's zlib"),
    "snappy": (2, (0, 1, 2), "the python-snappy package"),
    "lz4": (3, (0, 1, 2), "the lz4 and xxhash packages"),
    "zstd": (4, (2,), "the zstandard package"),
}
_PROBE = b'{"asset_id": "codec-check", "values": {"x": 1.0}}' * 4


def check_codecs() -> None:
    """Write and read back a record batch in every codec and message format, as the consumer
    reads them; CodecUnavailableError naming each codec that fails and what provides it.
    Both apps call it at start, before reading anything."""
    failed = []
    for name, (codec, formats, provider) in CODECS.items():
        for magic in formats:
            try:
                builder = MemoryRecordsBuilder(magic, codec, batch_size=1 << 16)
                builder.append(1_700_000_000_000, b"key", _PROBE, [])
                builder.close()
                batch = MemoryRecords(builder.buffer()).next_batch()
                values = [record.value for record in batch] if batch is not None else []
                if values != [_PROBE]:
                    raise ValueError(f"read back {len(values)} records, not the one written")
            except Exception as exc:
                failed.append(f"{name} (message format v{magic}: {exc}; needs {provider})")
                break
    if failed:
        raise CodecUnavailableError(
            "cannot read batches compressed with " + "; ".join(failed) + ": install the "
            "project's dependencies (pip install sensor-anomaly) in this environment"
        )


def poll_records(consumer: KafkaConsumer, timeout_ms: int, max_records: int) -> list[SourceRecord]:
    """One poll's records, in offset order within each partition; UnreadableBatchError when
    the client cannot decode a fetched batch (records of other partitions taken before it
    come out first: kafka-python raises at the next poll)."""
    try:
        batches = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
    except (UnsupportedCodecError, CorruptRecordError) as exc:
        raise _unreadable(consumer, exc) from exc
    except KafkaError:
        raise
    except Exception as exc:  # a decompressor's own error on a damaged batch (zlib, lz4...)
        raise _unreadable(consumer, exc) from exc
    return [record for records in batches.values() for record in records]


def _unreadable(consumer: KafkaConsumer, exc: Exception) -> UnreadableBatchError:
    """Where the batch that `exc` came from lies: the partition whose records the client was
    unpacking (kafka-python keeps it while the batch is not drained) and the next offset to
    read there, which is inside that batch. Unknown: the position of every partition."""
    pending = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    tp = getattr(pending, "topic_partition", None)
    if isinstance(tp, TopicPartition):
        topic, partition, offset = tp.topic, tp.partition, consumer.position(tp)
        where = f"the batch of {topic}/{partition} at offset {offset}"
    else:
        topic = partition = offset = None
        positions = {
            f"{t.topic}/{t.partition}": consumer.position(t) for t in consumer.assignment()
        }
        where = f"a fetched batch (positions {positions})"
    return UnreadableBatchError(
        f"cannot read {where}: {exc!r}; no record of it can be read, so the reader stops "
        "rather than skip it (docs/operations.md, 'An unreadable batch')",
        topic,
        partition,
        offset,
    )


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by consumer, producer and admin client."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
        "bootstrap_timeout_ms": kafka.bootstrap_timeout_ms,
    }
    optional = {
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
        "ssl_password": kafka.ssl_password.get_secret_value() if kafka.ssl_password else None,
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        ),
        "api_version": kafka.api_version_tuple,
    }
    config.update({k: str(v) if k.endswith("file") else v for k, v in optional.items() if v})
    return config


def make_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for all in-sync replicas (idempotent where the broker can);
    LoginRefusedError when the brokers refuse its login."""
    version = kafka.api_version_tuple
    config = {
        **client_config(kafka),
        "acks": "all",
        "linger_ms": 5,
        "max_block_ms": int(kafka.flush_timeout_s * 1000),
        "enable_idempotence": version is None or version >= (0, 11),
        **overrides,
    }
    return _made(KafkaProducer, config)


def make_consumer(kafka: KafkaSettings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A raw-bytes consumer with auto-commit off; LoginRefusedError when the brokers refuse
    its login."""
    version = kafka.api_version_tuple
    separate_poll_interval = version is None or version >= (0, 10, 1)
    transactions = version is None or version >= (0, 11)
    config = {
        **client_config(kafka),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": max(100, kafka.session_timeout_ms // 3),
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        **({"max_poll_interval_ms": kafka.max_poll_interval_ms} if separate_poll_interval else {}),
        **({"isolation_level": kafka.isolation_level} if transactions else {}),
        **overrides,
    }
    return _made(KafkaConsumer, config)


def login_refusal(client: KafkaConsumer | KafkaProducer) -> LoginRefusedError | None:
    """The refusal that ended a client's first contact with the brokers, if one did. A client
    told the brokers' version (`api_version`) makes that contact only when first used: a
    request of it that then times out may have been refused (the worker asks at start)."""
    manager = _MANAGERS.get(client)
    return manager.refusal if manager is not None else None


_Client = TypeVar("_Client", KafkaConsumer, KafkaProducer)
# The connection manager of each client made here, for `login_refusal`.
_MANAGERS: weakref.WeakKeyDictionary[object, _RefusalAware] = weakref.WeakKeyDictionary()


def _made(kind: type[_Client], config: dict[str, Any]) -> _Client:
    """A client of `kind` whose connections are watched for a refused login: the refusal is
    raised as LoginRefusedError instead of the timeout kafka-python ends its bootstrap with."""
    managers: list[_RefusalAware] = []

    def client(**configs: Any) -> KafkaNetClient:
        net = NetworkSelector(**configs)
        manager = _RefusalAware(net, **configs)
        managers.append(manager)
        return KafkaNetClient(net=net, manager=manager, **configs)

    try:
        made = kind(**config, kafka_client=client)
    except KafkaError as exc:
        refusal = managers[0].refusal if managers else None
        if refusal is not None:
            raise refusal from exc
        raise
    finally:
        for manager in managers:
            manager.making = False
    _MANAGERS[made] = managers[0]
    return made


class _RefusalAware(KafkaConnectionManager):
    """kafka-python 3.0.12's connection manager, told of refused logins.

    A refused SASL login or a failed TLS handshake reaches kafka-python only as the failure
    of the connection's initialisation, which its bootstrap takes for a broker not ready yet:
    it tries again until `bootstrap_timeout_ms` has passed and raises "Unable to bootstrap"
    (its cache meant to surface such failures, `maybe_raise_auth_failure`, is never filled).
    Here each new connection's initialisation is watched and a refusal kept in `refusal`
    (until a login succeeds). While the client is being made (`making`: its constructor
    bootstraps when the brokers' version is not set), a refusal also closes the manager,
    which ends that bootstrap at once. Later (a client told the version, whose first contact
    comes with its first request; credentials rotated under a running one) it is kept only.

    The brokers send their answer refusing a login and close the connection at once; kafka-
    python 3.0.12 drops the bytes that arrive with the close (`_read_from_sock` aborts before
    handing them over), so the refusal was lost in about half the tries, in some runs in
    all of them. Each transport here hands them over first (`_delivering`).
    """

    def __init__(self, net: NetworkSelector, **configs: Any) -> None:
        self.refusal: LoginRefusedError | None = None
        self.making = True
        super().__init__(net, **configs)

    def get_connection(self, node_id: Any, *args: Any, **kwargs: Any) -> Any:
        new = node_id not in self._conns
        conn = super().get_connection(node_id, *args, **kwargs)
        if new:
            node = self.cluster.broker_metadata(node_id)
            where = f"{node.host}:{node.port}" if node is not None else str(node_id)
            conn.init_future.add_errback(self._failed, where)
            conn.init_future.add_callback(self._succeeded)
        return conn

    async def _build_transport(self, node: Any, timeout_at: float | None = None) -> Any:
        transport = await super()._build_transport(node, timeout_at=timeout_at)
        transport.__class__ = _delivering(type(transport))
        return transport

    def _failed(self, where: str, exc: BaseException) -> None:
        refusal = _refusal(exc, self.config, where)
        if refusal is None:
            return
        self.refusal = refusal
        if self.making:
            self.close()

    def _succeeded(self, _: object) -> None:
        self.refusal = None


_DELIVERING: dict[type, type] = {}


def _delivering(kind: Any) -> type:
    """`kind` (kafka-python's TCP or TLS transport) handing over the bytes read together with
    the peer's close before it reports the close (at the next read: a socket closed by its
    peer stays readable)."""
    if kind not in _DELIVERING:
        receive = kind._sock_recv

        def _sock_recv(transport: Any) -> tuple[bytes, Exception | None]:
            closed: Exception | None = transport.__dict__.pop("_closed_by_peer", None)
            if closed is not None:
                return b"", closed
            data, err = receive(transport)
            if data and err is not None:
                transport._closed_by_peer = err
                return data, None
            return data, err

        _DELIVERING[kind] = type(f"Delivering{kind.__name__}", (kind,), {"_sock_recv": _sock_recv})
    return _DELIVERING[kind]


def _refusal(exc: BaseException, config: dict[str, Any], where: str) -> LoginRefusedError | None:
    """The refusal `exc` is, in words naming the settings to check; None when it is not one
    (a broker away, a connection reset: worth trying again)."""
    mechanism = config.get("sasl_mechanism")
    if isinstance(exc, SaslAuthenticationFailedError):
        said = str(exc.args[0]).split(": ", 1)[-1] if exc.args else ""
        return LoginRefusedError(
            f"the brokers ({where}) refused the login of SASL user "
            f"{config.get('sasl_plain_username')!r} ({mechanism}): {said}",
            ("sasl_username", "sasl_password", "sasl_mechanism"),
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return LoginRefusedError(
            f"the brokers ({where}) do not offer SASL mechanism {mechanism}: {exc}",
            ("sasl_mechanism", "security_protocol"),
        )
    tls = _ssl_error(exc)
    if tls is None:
        return None
    if isinstance(tls, ssl.SSLCertVerificationError):
        mismatch = tls.verify_code == _HOSTNAME_MISMATCH
        fields: tuple[str, ...] = ("bootstrap_servers",) if mismatch else ("ssl_cafile",)
        why = f"certificate verify failed: {tls.verify_message}"
    else:  # the broker refused this client's certificate, or the listener is not TLS
        fields = ("ssl_certfile", "ssl_keyfile", "security_protocol")
        why = str(tls)
    return LoginRefusedError(f"the TLS handshake with {where} failed: {why}", fields)


_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
# Not a refusal: the peer went away mid-handshake (a broker restarting), worth trying again.
_TRANSIENT_SSL = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                  ssl.SSLWantReadError, ssl.SSLWantWriteError)  # fmt: skip


def _ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind `exc`, unless a transient one. kafka-python wraps it in a
    KafkaConnectionError: a handshake's as its context, one read after the handshake (the
    broker refusing this client's certificate, under TLS 1.3) as its argument."""
    for _ in range(10):  # a chain is short; bounded all the same
        if exc is None:
            return None
        if isinstance(exc, ssl.SSLError):
            return None if isinstance(exc, _TRANSIENT_SSL) else exc
        wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = wrapped or exc.__cause__ or exc.__context__
    return None
