"""The Kafka client both apps build on (kafka-python): connection, codecs, reading a poll.

Every compression codec Kafka defines is read (gzip, snappy, lz4, zstd): `check_codecs` proves
it at start, and a batch the client still cannot decode raises UnreadableBatchError naming
where it lies (`poll_records`), never a bare traceback. Each app turns these errors into its
own exit codes.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

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
    """A producer that waits for all in-sync replicas (idempotent where the broker can)."""
    version = kafka.api_version_tuple
    config = {
        **client_config(kafka),
        "acks": "all",
        "linger_ms": 5,
        "max_block_ms": int(kafka.flush_timeout_s * 1000),
        "enable_idempotence": version is None or version >= (0, 11),
        **overrides,
    }
    return KafkaProducer(**config)


def make_consumer(kafka: KafkaSettings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A raw-bytes consumer with auto-commit off."""
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
    return KafkaConsumer(**config)
