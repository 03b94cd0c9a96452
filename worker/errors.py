"""Fatal worker errors and the exit codes they end the process with.

A bad record is never fatal (it is dead-lettered). These are: the batch's results could not
be published, or its offsets could not be committed, for longer than the brokers may be away
(`WORKER_KAFKA__OUTAGE_TIMEOUT_S`); the image lacks a compression codec's library; the client
cannot read a batch at all (its records cannot be dead-lettered, since they cannot be read).
The batch is then not committed, the process exits with the code below, Kubernetes restarts
it, and the batch is read again. At start: a topic the worker reads or writes is missing
(the cluster does not create topics on first use) for longer than `WORKER_TOPICS__WAIT_S`.
At any time: the brokers refuse the worker's principal an operation (an ACL is missing);
not tried again, since no wait grants it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.outbound import Outbound


class ExitCode(IntEnum):
    """Process exit codes; each names the class of failure."""

    OK = 0
    BAD_SETTINGS = 2
    MODEL_REFUSED = 4
    PUBLISH_FAILED = 5
    COMMIT_FAILED = 6
    BROKER_UNAVAILABLE = 7
    CODEC_UNAVAILABLE = 8
    UNREADABLE_BATCH = 9
    TOPIC_MISSING = 10
    NOT_AUTHORIZED = 11
    INTERRUPTED = 130


class FatalError(Exception):
    """Ends the worker with `exit_code` after the cause is logged; the batch is not committed."""

    exit_code = ExitCode.PUBLISH_FAILED


class PublishError(FatalError):
    """Alerts or dead letters were not acknowledged by the broker; `pending` are the messages
    still unacknowledged (to send again)."""

    exit_code = ExitCode.PUBLISH_FAILED

    def __init__(self, message: str, pending: Sequence[Outbound] = ()) -> None:
        super().__init__(message)
        self.pending = list(pending)


class CommitError(FatalError):
    """The consumer group refused or failed the offset commit."""

    exit_code = ExitCode.COMMIT_FAILED


class BrokerUnavailableError(FatalError):
    """The consumer or producer could not be created (brokers unreachable, bad credentials)."""

    exit_code = ExitCode.BROKER_UNAVAILABLE


class InputUnreadableError(FatalError):
    """The Kafka client cannot decode a fetched batch (anomaly.kafka.UnreadableBatchError):
    none of its records can be read, so none can be scored or dead-lettered."""

    exit_code = ExitCode.UNREADABLE_BATCH


class TopicMissingError(FatalError):
    """A topic the worker reads or writes does not exist and the brokers did not create it."""

    exit_code = ExitCode.TOPIC_MISSING


class NotAuthorizedError(FatalError):
    """The brokers refuse this worker's principal an operation on a topic or its group."""

    exit_code = ExitCode.NOT_AUTHORIZED


class RefusedSettingError(FatalError):
    """The brokers refuse a setting's value (a session timeout outside the range they allow)."""

    exit_code = ExitCode.BAD_SETTINGS
