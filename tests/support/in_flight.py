"""A worker (`python -m tests.support.in_flight`, the worker's own settings from the
environment) that SIGKILLs itself while a batch's alerts are in flight: at the first batch
with an alert event sent after a batch before it was committed. The messages are handed to
the producer, and not one acknowledgement has been waited for."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from worker import logs
from worker.kafka_sink import Delivery, KafkaSink
from worker.outbound import Outbound
from worker.runner import Worker
from worker.settings import WorkerSettings


class Killing(KafkaSink):
    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self.alerts, self.sends = settings.topics.alerts, 0

    def send(self, messages: Sequence[Outbound]) -> Delivery:
        delivery = super().send(messages)
        self.sends += 1  # the first send has no batch before it: nothing committed yet
        if self.sends > 1 and any(m.topic == self.alerts for m in messages):
            os.kill(os.getpid(), signal.SIGKILL)
        return delivery


if __name__ == "__main__":
    settings = WorkerSettings()
    logs.configure(settings.log_level, settings.log_format)
    Worker(settings, sink=Killing).run()
