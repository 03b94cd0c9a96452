"""Worker settings: validated at start, secrets masked, bad values named by their variable."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from anomaly.kafka import client_config
from tests.support.models import REPO
from training.settings import TrainingSettings
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


@pytest.mark.parametrize("app", [WorkerSettings, TrainingSettings])
def test_kafka_credentials_are_read_from_the_mounted_secrets_files_the_environment_winning(
    app: type[WorkerSettings] | type[TrainingSettings], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The pods mount the Secret `sensor-anomaly-kafka` as files named by its keys (the
    setting without the app's prefix), for both apps alike; a variable set wins."""
    for key, value in {"KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "KAFKA__SASL_MECHANISM":
                       "SCRAM-SHA-512", "KAFKA__SASL_USERNAME": "trainer",
                       "KAFKA__SASL_PASSWORD": "hunter2"}.items():  # fmt: skip
        (tmp_path / key).write_text(value)
    kafka = app(_secrets_dir=tmp_path).kafka
    assert kafka.sasl_username == "trainer"
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "hunter2"
    prefix = "WORKER_" if app is WorkerSettings else "TRAINING_"
    monkeypatch.setenv(prefix + "KAFKA__SASL_USERNAME", "from-env")
    assert app(_secrets_dir=tmp_path).kafka.sasl_username == "from-env"
    assert app(_secrets_dir=tmp_path / "absent").kafka.sasl_username == "from-env"


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
        (
            "WORKER_STORE__PATH",
            "s3://My_Models/x",
            "WORKER_STORE__PATH: Value error, 's3://My_Models/x': 'My_Models' is not a bucket name",
        ),
        (
            "WORKER_STORE__PATH",
            "gs://models",
            "WORKER_STORE__PATH: Value error, 'gs://models': "
            "a model store is a directory or s3://bucket/prefix",
        ),
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


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    """Every leaf setting's environment variable, e.g. WORKER_KAFKA__FETCH_MAX_WAIT_MS."""
    names = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += _env_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(prefix + name.upper())
    return names


@pytest.mark.parametrize(("model", "prefix"), [(WorkerSettings, "WORKER_"),
                                               (TrainingSettings, "TRAINING_")])  # fmt: skip
def test_the_readme_documents_every_setting_and_no_other(
    model: type[BaseModel], prefix: str
) -> None:
    readme = (REPO / "README.md").read_text()
    names = _env_names(model, prefix)
    # a row may abbreviate a sibling of the variable before it (`..._SSL_CERTFILE`) or stand
    # for a whole part (`TRAINING_KAFKA__*`)
    missing = [n for n in names if f"`{n}`" not in readme
               and f"`..._{n.rsplit('__', 1)[-1]}`" not in readme
               and f"`{n.rsplit('__', 1)[0]}__*`" not in readme]  # fmt: skip
    assert not missing, f"settings missing from the README's tables: {missing}"
    documented = set(re.findall(rf"`({prefix}[A-Z0-9_]+)`", readme))
    assert not documented - set(names), "the README documents settings that do not exist"


def test_the_training_job_has_a_client_id_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The brokers tell the job from the workers by it (their logs, quotas, ACL audits); the
    connection fields it shares with the worker keep the worker's id."""
    assert TrainingSettings().kafka.client_id == "anomaly-training"
    assert WorkerSettings().kafka.client_id == "anomaly-worker"
    monkeypatch.setenv("TRAINING_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("WORKER_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    assert client_config(TrainingSettings().kafka)["client_id"] == "anomaly-training"
    assert client_config(WorkerSettings().kafka)["client_id"] == "anomaly-worker"
    assert TrainingSettings(kafka={"bootstrap_servers": "k:1"}).kafka.client_id == (
        "anomaly-training"
    )
    monkeypatch.setenv("TRAINING_KAFKA__CLIENT_ID", "plant-7-trainer")
    assert TrainingSettings().kafka.client_id == "plant-7-trainer"
