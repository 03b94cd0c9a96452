"""A directory model store that fails under a running worker, made to fail for real (no fault
injected in the code): its directory a symlink loop (ELOOP on every path under it), its
pointer a directory (EISDIR), the directory deleted. As in the S3 outage
(test_s3_store.py): the worker keeps scoring and alerting with the model in service, counts
each failed look, says so once, and loads the version published once the store is back."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from anomaly.model import ModelStore
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from tests.support.http import get
from tests.support.kafka import Running, processed, produce, settings_on
from tests.support.waiting import wait_until
from worker.errors import ExitCode
from worker.metrics import Metrics


def symlink_loop(store: Path) -> Callable[[], None]:
    """The store's path a symlink to itself (a volume remounted wrong, say): every read under
    it fails with ELOOP. Returns what puts the directory back."""
    aside = store.with_name(store.name + ".aside")
    store.rename(aside)
    store.symlink_to(store.name)

    def restore() -> None:
        store.unlink()
        aside.rename(store)

    return restore


def pointer_a_directory(store: Path) -> Callable[[], None]:
    """The pointer `current` replaced by a directory: reading it fails with EISDIR."""
    pointer = store / "current"
    pointer.unlink()
    pointer.mkdir()
    return pointer.rmdir


def deleted(store: Path) -> Callable[[], None]:
    """The store's directory deleted (rm -rf): the next publish makes it again."""
    shutil.rmtree(store)
    return lambda: None


def store_errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "anomaly_model_store_errors_total", {"model": "default"}
    )
    return value or 0.0


def opened(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    return value or 0.0


@pytest.mark.parametrize(
    ("fail", "said"),
    [(symlink_loop, "Too many levels of symbolic links"), (pointer_a_directory, "Is a directory"),
     (deleted, "is gone (deleted, or its volume unmounted)")],
    ids=["symlink-loop", "pointer-a-directory", "deleted"],
)  # fmt: skip
def test_the_worker_serves_through_a_directory_store_that_fails_and_follows_it_after(
    broker: LocalBroker,
    store: Path,
    caplog: pytest.LogCaptureFixture,
    fail: Callable[[Path], Callable[[], None]],
    said: str,
    publish_random: Callable[[ModelStore, str], str],
) -> None:
    caplog.set_level(logging.INFO, "worker.reload")
    settings = settings_on(broker, store)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"reload_interval_s": 0.2})}
    )
    fleet = Fleet(n_assets=4, seed=5)
    records = fleet.records(600, fleet.faults(600, first=300))  # the faults in the outage
    running = Running(settings)
    try:
        sent = produce(settings, (next(records) for _ in range(800)))
        wait_until(lambda: processed(running.metrics) >= sent, 60, "records scored")
        assert running.worker.http is not None
        ready = f"http://127.0.0.1:{running.worker.http.port}/readyz"
        opened_before = opened(running.metrics)

        restore = fail(store)
        wait_until(lambda: store_errors(running.metrics) >= 2, 60, "failed looks counted")
        sent += produce(settings, (next(records) for _ in range(1600)))
        wait_until(lambda: processed(running.metrics) >= sent, 60, "scored in the failure")
        assert opened(running.metrics) > opened_before  # the faults alerted meanwhile
        assert get(ready)[0] == 200  # a model serves: not a readiness matter
        messages = [r.getMessage() for r in caplog.records]
        [logged] = [m for m in messages if m.startswith("model store cannot be read (model")]
        assert said in logged
        assert not [m for m in messages if "waiting for a model" in m]

        restore()
        publish_random(ModelStore(store), "v2")
        wait_until(
            lambda: running.metrics.registry.get_sample_value(
                "anomaly_model_info", {"model": "default", "version": "v2"}
            ) == 1,
            60, "the worker on v2",
        )  # fmt: skip
        assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1
        assert running.thread.is_alive()
    finally:
        code = running.stop()
    assert code == ExitCode.OK
