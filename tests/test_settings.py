"""Worker settings: validated at start, secrets masked, bad values named by their variable."""

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from tests.conftest import REPO
from worker.kafka_io import client_config
from worker.settings import WorkerSettings

SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "worker",
    "sasl_password": "hunter2",
}


def test_secrets_are_masked_in_the_logged_settings_but_reach_the_client() -> None:
    settings = WorkerSettings(kafka=SASL)
    assert "hunter2" not in str(settings.masked())
    assert settings.masked()["kafka"]["sasl_password"] == "**********"
    config = client_config(settings.kafka)
    assert config["sasl_plain_password"] == "hunter2"
    assert config["security_protocol"] == "SASL_SSL"


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism, sasl_username"):
        WorkerSettings(kafka={"security_protocol": "SASL_PLAINTEXT"})


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_BATCH__SIZE", "64")
    monkeypatch.setenv("WORKER_ALERTS__OPEN_AFTER", "1")
    settings = WorkerSettings()
    assert (settings.batch.size, settings.alerts.open_after) == (64, 1)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "WORKER_BATCH__SIZE",
            "0",
            "WORKER_BATCH__SIZE: Input should be greater than or equal to 1",
        ),
        ("WORKER_TOPICS__ALERTS", "bad topic!", "WORKER_TOPICS__ALERTS: String should match"),
        ("WORKER_BATCH__SIZ", "5", "WORKER_BATCH__SIZ: Extra inputs are not permitted"),
    ],
)
def test_a_bad_setting_stops_the_worker_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=REPO, env={**os.environ, variable: value},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
