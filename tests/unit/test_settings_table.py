"""Every setting of the README's Worker and Training tables and of docs/review.md's Settings
table, set once to a value other than its default, through its environment variable (and, for
the training job, its flag), and seen to take effect on the settings object the process runs
with.

The tables are read from the documents: a setting documented there without a case below fails
here, and so does a case for a setting its table no longer lists. Where a setting's effect
needs a broker or a process, the case names the test that shows it (checked to exist).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from review.settings import ReviewSettings
from tests.support.models import REPO
from training.cli import _overrides, _parser
from training.settings import TrainingSettings
from worker.settings import WorkerSettings

README = REPO / "README.md"
REVIEW_DOC = REPO / "docs" / "review.md"
EFFECT = "tests/integration/test_settings_effect.py::"
EXITS = "tests/integration/test_exit_codes.py::"
MTLS = "tests/integration/test_mutual_tls.py::"


@dataclass(frozen=True)
class Case:
    """`value` (the variable's text, never its default) must give the field `expect`, with
    `needs` set beside it where the value is valid only with them; `shown_by`: tests that
    show the effect beyond the settings object (path::name)."""

    value: str
    expect: object
    needs: Mapping[str, str] = field(default_factory=dict)
    shown_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    """The value is documented as refused: settings fail naming this."""

    message: str


SASL = {"KAFKA__SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA__SASL_USERNAME": "u",
        "KAFKA__SASL_PASSWORD": "p"}  # fmt: skip
SECURED_WORKER = (f"{MTLS}test_a_worker_known_by_its_certificate_commits_then_exits_11_on_a_"
                  "refused_write",)  # fmt: skip
SECURED_TRAINING = (f"{MTLS}test_the_training_job_reads_its_range_over_a_secured_listener",)
SCRAM_WORKER = ("tests/integration/test_security.py::test_a_scram_user_with_its_acls_runs_the_"
                "worker_over_tls",)  # fmt: skip

# The Kafka connection: the same fields for each app (WORKER_KAFKA__*, TRAINING_KAFKA__*,
# REVIEW_KAFKA__*). The `needs` keys and the settings named without a prefix take the app's.
KAFKA: dict[str, Case] = {
    "BOOTSTRAP_SERVERS": Case("kafka-0:9092,kafka-1:9092", "kafka-0:9092,kafka-1:9092"),
    "CLIENT_ID": Case(
        "plant-7",
        "plant-7",
        shown_by=(f"{EFFECT}test_a_new_group_set_to_latest_skips_the_records_already_there",),
    ),
    "SECURITY_PROTOCOL": Case("SASL_SSL", "SASL_SSL", SASL),
    "SSL_CAFILE": Case("/etc/kafka/ca.pem", Path("/etc/kafka/ca.pem")),
    "SSL_CERTFILE": Case("/etc/kafka/client.pem", Path("/etc/kafka/client.pem")),
    "SSL_KEYFILE": Case("/etc/kafka/client.key", Path("/etc/kafka/client.key")),
    "SSL_PASSWORD": Case("key-pass", "key-pass"),
    "SASL_MECHANISM": Case("SCRAM-SHA-256", "SCRAM-SHA-256"),
    "SASL_USERNAME": Case("worker-7", "worker-7"),
    "SASL_PASSWORD": Case("hunter2", "hunter2"),
    "API_VERSION": Case(
        "0.9",
        "0.9",
        shown_by=(f"{EXITS}test_an_offset_commit_refused_past_the_outage_timeout_exits_6",),
    ),
    "SESSION_TIMEOUT_MS": Case("6000", 6000),
    "MAX_POLL_INTERVAL_MS": Case(
        "60000",
        60_000,
        shown_by=(
            "tests/integration/test_kafka4.py::test_a_publish_tried_again_keeps_the_worker_in_its_"
            "group",
        ),
    ),
    "FETCH_MAX_WAIT_MS": Case("500", 500),
    "REQUEST_TIMEOUT_MS": Case("5000", 5000),
    "BOOTSTRAP_TIMEOUT_MS": Case(
        "5000", 5000, shown_by=(f"{EXITS}test_brokers_nobody_answers_for_at_start_exit_7",)
    ),
    "FLUSH_TIMEOUT_S": Case(
        "5",
        5.0,
        shown_by=(f"{EXITS}test_dead_letters_unacknowledged_past_the_outage_timeout_exit_5",),
    ),
    "OUTAGE_TIMEOUT_S": Case(
        "30",
        30.0,
        shown_by=(
            f"{EXITS}test_dead_letters_unacknowledged_past_the_outage_timeout_exit_5",
            f"{EXITS}test_an_offset_commit_refused_past_the_outage_timeout_exits_6",
        ),
    ),
    "COMMIT_METADATA_MAX_BYTES": Case(
        "1024",
        1024,
        shown_by=(
            f"{EFFECT}test_alert_state_longer_than_the_broker_takes_is_dropped_and_the_offsets_"
            "commit",
        ),
    ),
    "AUTO_OFFSET_RESET": Case(
        "latest",
        "latest",
        shown_by=(f"{EFFECT}test_a_new_group_set_to_latest_skips_the_records_already_there",),
    ),
    "ISOLATION_LEVEL": Case(
        "read_committed",
        "read_committed",
        shown_by=(
            "tests/integration/test_kafka4.py::test_records_of_an_aborted_transaction_are_never_"
            "scored",
        ),
    ),
}
TLS_FIELDS = ("SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE", "SSL_PASSWORD")
SASL_FIELDS = ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD")

# Where records hold their fields (WORKER_INPUT__*, TRAINING_INPUT__*).
INPUT: dict[str, Case] = {
    "ASSET_FIELD": Case("tags.host", "tags.host"),
    "TIME_FIELD": Case("timestamp", "timestamp"),
    "VALUES_FIELD": Case("fields", "fields"),
    "SENSOR_FIELD": Case("name", "name"),
    "VALUE_FIELD": Case("reading", "reading"),
    "TIME_UNIT": Case("ms", "ms"),
    "CADENCE_S": Case("5", 5.0),
}
TOPICS: dict[str, Case] = {
    "INPUT": Case("plant.readings", "plant.readings"),
    "ALERTS": Case("plant.alerts", "plant.alerts"),
    "DEAD_LETTERS": Case("plant.readings.dlq", "plant.readings.dlq"),
    "CALENDAR": Case("plant.calendar", "plant.calendar"),
    "GROUP": Case("plant-workers", "plant-workers"),
}
ROUTES: dict[str, Case] = {
    "ROUTE_FIELD": Case("asset_type", "asset_type"),
    "ROUTES": Case('{"pump-*": "pumps"}', {"pump-*": "pumps"}),
}


def prefixed(prefix: str, section: str, cases: Mapping[str, Case]) -> dict[str, Case]:
    """`cases` as the variables of `section` of one app, their companions renamed to match."""
    return {
        f"{prefix}{section}__{name}": Case(
            case.value,
            case.expect,
            {prefix + k: v for k, v in case.needs.items()},
            case.shown_by,
        )
        for name, case in cases.items()
    }


WORKER: dict[str, Case] = {
    **prefixed("WORKER_", "KAFKA", KAFKA),
    **prefixed("WORKER_", "TOPICS", TOPICS),
    "WORKER_TOPICS__WAIT_S": Case(
        "5",
        5.0,
        shown_by=(
            "tests/integration/test_kafka4.py::test_a_topic_missing_at_start_is_named_and_ends_the_"
            "worker_with_its_code",
        ),
    ),
    "WORKER_BATCH__SIZE": Case("64", 64),
    "WORKER_BATCH__MAX_WAIT_MS": Case("1000", 1000),
    "WORKER_BATCH__MAX_RECORD_BYTES": Case("1024", 1024),
    "WORKER_STORE__PATH": Case("/models", "/models"),
    "WORKER_STORE__RELOAD_INTERVAL_S": Case("2", 2.0),
    "WORKER_MODELS__NAMES": Case(
        '["pumps","compressors"]',
        ("pumps", "compressors"),
        {"WORKER_MODELS__ROUTE_FIELD": "asset_type"},
    ),
    **prefixed("WORKER_", "MODELS", ROUTES),
    "WORKER_INPUT__SHAPE": Case("value", "value"),
    **prefixed("WORKER_", "INPUT", INPUT),
    "WORKER_ALERTS__OPEN_AFTER": Case("1", 1),
    "WORKER_ALERTS__RESOLVE_AFTER": Case("2", 2),
    "WORKER_ALERTS__RESOLVE_AFTER_S": Case("0", 0.0),
    "WORKER_ALERTS__SCORE_RATE": Case("1", 1.0),
    "WORKER_ALERTS__END_DROP": Case("0", 0.0),
    "WORKER_ALERTS__ONSET_STEP": Case("0", 0.0),
    "WORKER_ALERTS__TOP_FEATURES": Case("5", 5),
    "WORKER_ALERTS__MAX_ASSETS": Case("1000", 1000),
    "WORKER_ALERTS__EXPLAIN_ASSETS": Case("0", 0),
    "WORKER_ALERTS__EXPLAIN_LINGER_S": Case("60", 60.0),
    "WORKER_SENSORS__STALE_AFTER_S": Case("0", 0.0),
    "WORKER_INCIDENTS__ENABLED": Case(
        "false",
        False,
        shown_by=("tests/unit/test_incidents.py::test_disabled_every_episode_is_its_own",),
    ),
    "WORKER_INCIDENTS__SPAN_S": Case(
        "60",
        60.0,
        shown_by=("tests/unit/test_incidents.py::test_the_span_runs_from_the_latest_members_page",),
    ),
    "WORKER_INCIDENTS__SIMILARITY": Case(
        "0.6",
        0.6,
        shown_by=("tests/unit/test_incidents.py::test_the_similarity_is_a_least_cosine",),
    ),
    "WORKER_INCIDENTS__AREAS": Case(
        '{"north-*": "north"}',
        {"north-*": "north"},
        shown_by=("tests/unit/test_incidents.py::test_areas_and_models_keep_incidents_apart",),
    ),
    "WORKER_INCIDENTS__AREA_FIELD": Case(
        "labels.area",
        "labels.area",
        shown_by=(
            "tests/unit/test_incidents.py::test_pumps_whose_records_say_two_areas_make_two_incidents",
        ),
    ),
    "WORKER_HTTP__HOST": Case("127.0.0.1", "127.0.0.1"),
    "WORKER_HTTP__PORT": Case("9100", 9100),
    "WORKER_HTTP__LIVENESS_TIMEOUT_S": Case(
        "15",
        15.0,
        shown_by=(f"{EXITS}test_a_stalled_loop_fails_livez_and_a_second_sigint_exits_130",),
    ),
    "WORKER_SCORE_THREADS": Case("2", 2),
    "WORKER_LOG_LEVEL": Case("DEBUG", "DEBUG"),
    "WORKER_LOG_FORMAT": Case("text", "text"),
}
for name in TLS_FIELDS:
    WORKER[f"WORKER_KAFKA__{name}"] = Case(**{**vars(WORKER[f"WORKER_KAFKA__{name}"]),
                                              "shown_by": SECURED_WORKER})  # fmt: skip
for name in SASL_FIELDS:
    WORKER[f"WORKER_KAFKA__{name}"] = Case(**{**vars(WORKER[f"WORKER_KAFKA__{name}"]),
                                              "shown_by": SCRAM_WORKER})  # fmt: skip

TRAINING: dict[str, Case] = {
    "TRAINING_DATA__SOURCE": Case("kafka", "kafka"),
    "TRAINING_DATA__PATH": Case("plant.csv", Path("plant.csv")),
    "TRAINING_DATA__FORMAT": Case("jsonl", "jsonl"),
    "TRAINING_DATA__DELIMITER": Case(";", ";"),
    "TRAINING_DATA__TIMESTAMP_COLUMN": Case("datetime", "datetime"),
    "TRAINING_DATA__ASSET_COLUMN": Case("asset", "asset"),
    "TRAINING_DATA__FEATURES": Case("flow,pressure", ("flow", "pressure")),
    "TRAINING_DATA__EXCLUDE": Case("anomaly,changepoint", ("anomaly", "changepoint")),
    "TRAINING_DATA__HOLDOUT_FRACTION": Case("0.3", 0.3),
    "TRAINING_DATA__SINCE": Case("90m", timedelta(minutes=90)),
    "TRAINING_DATA__START": Case("2026-11-20T00:00:00Z", datetime(2026, 11, 20, tzinfo=UTC)),
    "TRAINING_DATA__END": Case("2026-11-21T06:00:00Z", datetime(2026, 11, 21, 6, tzinfo=UTC)),
    "TRAINING_DATA__LABEL_COLUMN": Case("anomaly", "anomaly"),
    "TRAINING_DATA__MAX_ROWS": Case(
        "5000", 5000, shown_by=(f"{EFFECT}test_a_training_run_reads_at_most_max_rows_the_latest",)
    ),
    **prefixed("TRAINING_", "KAFKA", KAFKA),
    **prefixed("TRAINING_", "TOPICS", TOPICS),
    "TRAINING_TOPICS__FEEDBACK": Case("plant.verdicts", "plant.verdicts"),
    "TRAINING_MODEL__KIND": Case("conv", "conv"),
    "TRAINING_MODEL__WINDOW": Case("30", 30),
    "TRAINING_MODEL__HIDDEN": Case("64,32", (64, 32)),
    "TRAINING_MODEL__LATENT": Case("4", 4),
    "TRAINING_MODEL__KERNEL": Case("5", 5),
    "TRAINING_MODEL__EPOCHS": Case("50", 50),
    "TRAINING_MODEL__BATCH_SIZE": Case("64", 64),
    "TRAINING_MODEL__LEARNING_RATE": Case("0.01", 0.01),
    "TRAINING_MODEL__WEIGHT_DECAY": Case("0.0001", 0.0001),
    "TRAINING_MODEL__PATIENCE": Case("5", 5),
    "TRAINING_MODEL__SEED": Case("7", 7),
    "TRAINING_CALIBRATION__TARGET_FPR": Case("0.005", 0.005),
    "TRAINING_CALIBRATION__METHOD": Case("quantile", "quantile"),
    "TRAINING_CALIBRATION__MARGIN": Case("1.2", 1.2),
    "TRAINING_CALIBRATION__ASSET_MIN_WINDOWS": Case("500", 500),
    "TRAINING_CALIBRATION__ASSET_LIMIT": Case("0", 0),
    "TRAINING_CALIBRATION__DRIFT_RATE": Case("0", 0.0),
    "TRAINING_CLEAN__ENABLED": Case("false", False),
    "TRAINING_STATES__STOPPED_WHEN": Case("speed < 100", "speed < 100"),
    "TRAINING_STATES__GRACE_S": Case("30", 30.0),
    "TRAINING_INSTRUMENTS__ENABLED": Case("false", False),
    "TRAINING_INSTRUMENTS__PHYSICAL": Case('{"pressure": [0, 16]}', {"pressure": (0.0, 16.0)}),
    "TRAINING_RULES__OPEN_AFTER": Case("2", 2),
    "TRAINING_RULES__RESOLVE_AFTER": Case("3", 3),
    "TRAINING_RULES__RESOLVE_AFTER_S": Case("60", 60.0),
    "TRAINING_RULES__SCORE_RATE": Case("0.5", 0.5),
    "TRAINING_RULES__END_DROP": Case("0", 0.0),
    "TRAINING_RULES__ONSET_STEP": Case("0", 0.0),
    "TRAINING_RULES__ONSET_SPAN": Case("30", 30),
    "TRAINING_RULES__ONSET_MEAN": Case("3", 3),
    "TRAINING_RULES__ONSET_BYPASS": Case("0", 0.0),
    "TRAINING_GATE__FRACTION": Case("0.3", 0.3),
    "TRAINING_GATE__FPR_FACTOR": Case("3", 3.0),
    "TRAINING_GATE__ERROR_MARGIN": Case("0.2", 0.2),
    # the gate's labelled check at work: tests/unit/test_gate.py
    "TRAINING_GATE__VALIDATION_PATH": Case("labelled.csv", Path("labelled.csv")),
    "TRAINING_GATE__VALIDATION_LABEL": Case("fault", "fault"),
    "TRAINING_GATE__MAX_EPISODES_PER_ASSET_WEEK": Case(
        "2.5",
        2.5,
        shown_by=(
            "tests/unit/test_gate.py::"
            "test_the_gate_states_each_models_episodes_a_week_and_refuses_one_over_the_budget",
        ),
    ),
    "TRAINING_STORE__PATH": Case("s3://models/plant", "s3://models/plant"),
    "TRAINING_STORE__MODEL": Case("pumps", "pumps"),
    **prefixed("TRAINING_", "MODELS", ROUTES),
    **prefixed("TRAINING_", "INPUT", INPUT),
    # one value per message: assembled on the cadence the job is told
    "TRAINING_INPUT__SHAPE": Case("value", Refused("TRAINING_INPUT__CADENCE_S")),
    "TRAINING_INPUT__STALE_AFTER_S": Case("30", 30.0),
    "TRAINING_STORE__KEEP": Case("3", 3),
    "TRAINING_STORE__PROTECT_S": Case("0", 0.0),
    "TRAINING_PUSHGATEWAY__URL": Case("pushgateway:9091", "pushgateway:9091"),
    "TRAINING_PUSHGATEWAY__JOB": Case("plant-training", "plant-training"),
    "TRAINING_LOG_LEVEL": Case("WARNING", "WARNING"),
}
for name in (*TLS_FIELDS, *SASL_FIELDS):
    TRAINING[f"TRAINING_KAFKA__{name}"] = Case(**{**vars(TRAINING[f"TRAINING_KAFKA__{name}"]),
                                                  "shown_by": SECURED_TRAINING})  # fmt: skip

# The review page's (docs/review.md): its Kafka connection is the worker's fields, whose
# tests above show the worker's use of them, not the page's.
PROXIES = ("tests/unit/test_review.py::test_the_proxys_headers_are_believed_only_from_the_proxy",)
REVIEW: dict[str, Case] = {
    **{
        name: Case(case.value, case.expect, case.needs)
        for name, case in prefixed("REVIEW_", "KAFKA", KAFKA).items()
    },
    "REVIEW_TOPICS__ALERTS": TOPICS["ALERTS"],
    "REVIEW_TOPICS__INPUT": TOPICS["INPUT"],
    "REVIEW_TOPICS__FEEDBACK": Case("plant.verdicts", "plant.verdicts"),
    "REVIEW_STORE__PATH": Case("s3://models/plant", "s3://models/plant"),
    **prefixed("REVIEW_", "INPUT", INPUT),
    "REVIEW_INPUT__SHAPE": Case("value", Refused("REVIEW_INPUT__CADENCE_S")),
    "REVIEW_INPUT__STALE_AFTER_S": Case("30", 30.0),
    "REVIEW_HTTP__HOST": Case("127.0.0.1", "127.0.0.1"),
    "REVIEW_HTTP__PORT": Case("0", 0),  # any free port
    "REVIEW_HTTP__THREADS": Case("2", 2),
    "REVIEW_AUTH__TRUSTED_PROXIES": Case(
        "10.0.0.0/8, fd00::/8",
        (ip_network("10.0.0.0/8"), ip_network("fd00::/8")),
        shown_by=PROXIES,
    ),
    "REVIEW_AUTH__USER_HEADER": Case(
        "X-Auth-Request-User", "X-Auth-Request-User", shown_by=PROXIES
    ),
    "REVIEW_AUTH__GROUPS_HEADER": Case(
        "X-Auth-Request-Groups", "X-Auth-Request-Groups", shown_by=PROXIES
    ),
    "REVIEW_AUTH__JUDGE_GROUP": Case("plant-engineers", "plant-engineers", shown_by=PROXIES),
    "REVIEW_AUTH__FORM_KEY": Case("0123456789abcdef", "0123456789abcdef"),
    "REVIEW_HISTORY_DAYS": Case("7", 7.0),
    "REVIEW_MAX_EPISODES": Case("1000", 1000),
    "REVIEW_MARGIN_S": Case("60", 60.0),
    "REVIEW_LOG_LEVEL": Case("DEBUG", "DEBUG"),
}

# Values a table documents as refused (or plainly not settings), beside each variable's case.
REFUSED: dict[str, tuple[tuple[str, Case], ...]] = {
    "REVIEW_": (
        # "16 characters at least"
        ("REVIEW_AUTH__FORM_KEY", Case("0123456789abcde", Refused("at least 16"))),
        # no address to believe the proxy from: refused at start
        ("REVIEW_AUTH__TRUSTED_PROXIES", Case("", Refused("the identity proxy's addresses"))),
        ("REVIEW_AUTH__TRUSTED_PROXIES", Case("proxy.local", Refused("auth.trusted_proxies"))),
    ),
}


@dataclass(frozen=True)
class App:
    """One app's settings, its cases, and the table that documents them: the lines after the
    line starting with `heading` in `doc`, up to the next heading; at least `rows` settings."""

    model: type[BaseModel]
    cases: dict[str, Case]
    doc: Path
    heading: str
    rows: int


APPS: dict[str, App] = {
    "WORKER_": App(WorkerSettings, WORKER, README, "### Worker", 41),
    "TRAINING_": App(TrainingSettings, TRAINING, README, "### Training job", 41),
    "REVIEW_": App(ReviewSettings, REVIEW, REVIEW_DOC, "## Settings", 30),
}


# Reading the tables ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    variable: str
    flag: str | None  # the training table's flag column (None: no flag)


def documented(prefix: str) -> list[Row]:
    """The settings of one app's table, each variable spelt out: `..._X` stands for the
    previous variable's section with X, and `SECTION__*` for every field of that section."""
    app = APPS[prefix]
    lines = iter(app.doc.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.startswith(app.heading):
            break
    rows: list[Row] = []
    for line in lines:
        if line.startswith("#"):
            break
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        flags = re.findall(r"`(--[a-z-]+)`", cells[1]) if prefix == "TRAINING_" else []
        previous = ""
        for i, name in enumerate(names):
            if name.startswith("..._"):
                name = previous.rsplit("__", 1)[0] + "__" + name[len("..._") :]
            previous = name
            flag = flags[i] if len(flags) == len(names) else None
            if name.endswith("__*"):
                section = name[len(prefix) : -len("__*")].lower()
                fields = fields_of(app.model, section)
                rows += [Row(name[:-1] + f.upper(), None) for f in fields]
            else:
                rows.append(Row(name, flag))
    return rows


def fields_of(model: type[BaseModel], section: str) -> list[str]:
    kind = model.model_fields[section].annotation
    assert isinstance(kind, type), section
    assert issubclass(kind, BaseModel), section
    return list(kind.model_fields)


# The tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", list(APPS))
def test_every_documented_setting_has_a_case_and_every_case_a_row(prefix: str) -> None:
    app = APPS[prefix]
    rows = {row.variable for row in documented(prefix)}
    assert len(rows) >= app.rows  # the table was found, its SECTION__* rows spelt out
    assert not sorted(rows - set(app.cases)), "documented settings without a case here"
    assert not sorted(set(app.cases) - rows), "cases here for settings the table does not list"
    refused = {variable for variable, _ in REFUSED.get(prefix, ())}
    assert not sorted(refused - rows), "refusals here for settings the table does not list"


def all_cases() -> Iterator[tuple[str, str, Case]]:
    for prefix, app in APPS.items():
        yield from ((prefix, variable, case) for variable, case in app.cases.items())
        yield from ((prefix, variable, case) for variable, case in REFUSED.get(prefix, ()))


def case_id(variable: str, case: Case) -> str:
    return f"{variable}={case.value!r}" if isinstance(case.expect, Refused) else variable


@pytest.mark.parametrize(("prefix", "variable", "case"), list(all_cases()),
                         ids=[case_id(v, c) for _, v, c in all_cases()])  # fmt: skip
def test_each_setting_takes_effect_through_its_variable(
    prefix: str, variable: str, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = APPS[prefix].model
    for name in [n for n in list(os.environ) if n.startswith(prefix)]:
        monkeypatch.delenv(name)
    for name, value in case.needs.items():
        monkeypatch.setenv(name, value)
    default = field_value(model(), variable, prefix)
    monkeypatch.setenv(variable, case.value)
    if isinstance(case.expect, Refused):
        with pytest.raises(ValidationError, match=re.escape(case.expect.message)):
            model()
        return
    got = field_value(model(), variable, prefix)
    assert got == case.expect
    assert got != default, "the case must set something other than the default"


def flagged() -> Iterator[tuple[str, str, Case]]:
    for row in documented("TRAINING_"):
        if row.flag is not None:
            yield row.flag, row.variable, TRAINING[row.variable]


@pytest.mark.parametrize(("flag", "variable", "case"), list(flagged()),
                         ids=[f for f, _, _ in flagged()])  # fmt: skip
def test_each_training_flag_sets_its_variables_field(
    flag: str, variable: str, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`anomaly-train fit FLAG VALUE` gives the field the README's row says, as its variable."""
    for name in [n for n in list(os.environ) if n.startswith("TRAINING_")]:
        monkeypatch.delenv(name)
    for name, value in case.needs.items():
        monkeypatch.setenv(name, value)
    args = _parser().parse_args(["fit", flag, case.value])
    got = field_value(TrainingSettings(**_overrides(args)), variable, "TRAINING_")
    assert got == case.expect


def test_the_tests_named_as_showing_an_effect_exist() -> None:
    named = {test for _, _, case in all_cases() for test in case.shown_by}
    assert len(named) > 10
    for test in sorted(named):
        path, name = test.split("::")
        assert f"def {name}(" in (REPO / path).read_text(encoding="utf-8"), test


def field_value(settings: BaseModel, variable: str, prefix: str) -> Any:
    """The field behind `variable` (WORKER_KAFKA__SSL_CAFILE: settings.kafka.ssl_cafile),
    secrets read out."""
    value: Any = settings
    for part in variable[len(prefix) :].lower().split("__"):
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value
