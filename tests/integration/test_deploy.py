"""deploy/ and the Dockerfile, proven against the code: rendered with kubectl kustomize,
validated against the Kubernetes schemas offline, and cross-checked with the settings, the
probes, the commands and the metrics the code really has."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from anomaly.settings import SECRETS_DIR
from tests.support.models import REPO
from tests.support.observability import dashboard, dashboard_exprs, rule_exprs
from training import metrics as training_metrics
from training.settings import TrainingSettings
from worker.health import Health, HealthServer
from worker.metrics import Metrics
from worker.settings import WorkerSettings

DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir())
KUBERNETES = "1.30"
CRDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
# Keys of the optional Kafka credentials Secret (docs/operations.md), without the prefix.
SECRET_KEYS = (
    "KAFKA__SECURITY_PROTOCOL", "KAFKA__SASL_MECHANISM", "KAFKA__SASL_USERNAME",
    "KAFKA__SASL_PASSWORD", "KAFKA__SSL_PASSWORD",
)  # fmt: skip


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def find(overlay: str, kind: str, name_part: str = "") -> dict[str, Any]:
    matches = [
        o for o in render(overlay) if o["kind"] == kind and name_part in o["metadata"]["name"]
    ]
    assert len(matches) == 1, f"{overlay}: {len(matches)} {kind} named *{name_part}*"
    return matches[0]


def pod_of(overlay: str, which: str) -> dict[str, Any]:
    """The pod spec of the worker's Deployment or the training job's CronJob."""
    if which == "worker":
        spec: dict[str, Any] = find(overlay, "Deployment")["spec"]["template"]["spec"]
    else:
        spec = find(overlay, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def containers(overlay: str) -> dict[str, dict[str, Any]]:
    return {which: pod_of(overlay, which)["containers"][0] for which in ("worker", "training")}


def test_overlays_exist() -> None:
    assert {"dev", "prod", "prod-s3"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    for obj in render(overlay):
        if obj["kind"] in CRDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_what_their_operators_require(overlay: str) -> None:
    service = find(overlay, "Service")
    deployment = find(overlay, "Deployment")
    monitor = find(overlay, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert all(e["port"] in port_names and e["path"] == "/metrics" for e in monitor["endpoints"])

    rule = find(overlay, "PrometheusRule")["spec"]
    for group in rule["groups"]:
        assert group["name"]
        for r in group["rules"]:
            assert r.get("alert")
            assert isinstance(r.get("expr"), str)

    scaled = [o for o in render(overlay) if o["kind"] == "ScaledObject"]
    for obj in scaled:
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        [trigger] = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(meta)
        assert meta["allowIdleConsumers"] == "false"  # never beyond the partition count
        config = configmap(overlay, "worker")
        assert meta["consumerGroup"] == config["WORKER_TOPICS__GROUP"]
        assert meta["topic"] == config["WORKER_TOPICS__INPUT"]
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert overlay.startswith("prod") == bool(scaled)


def configmap(overlay: str, which: str) -> dict[str, str]:
    data = find(overlay, "ConfigMap", f"sensor-anomaly-{which}-")["data"]
    assert isinstance(data, dict)
    return data


def has_field(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    inner = field.annotation
    return isinstance(inner, type) and issubclass(inner, BaseModel) and has_field(inner, path[1:])


# The AWS variables an S3 model store reads (botocore's), besides the products' own settings.
AWS_VARIABLES = {
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_SHARED_CREDENTIALS_FILE",
}


def setting_exists(name: str) -> bool:
    if name in AWS_VARIABLES:
        return True
    for prefix, model in (("WORKER_", WorkerSettings), ("TRAINING_", TrainingSettings)):
        if name.startswith(prefix):
            return has_field(model, name.removeprefix(prefix).lower().split("__"))
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_is_a_setting_with_a_valid_value(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for which, model in (("worker", WorkerSettings), ("training", TrainingSettings)):
        data = configmap(overlay, which)
        unknown = [name for name in data if not setting_exists(name)]
        assert not unknown, f"{overlay} {which} ConfigMap sets unknown variables {unknown}"
        for name, value in data.items():
            monkeypatch.setenv(name, value)
        model()  # the ConfigMap's values pass validation
        for var in data:
            monkeypatch.delenv(var)
    for which, container in containers(overlay).items():
        prefix = "WORKER_" if which == "worker" else "TRAINING_"
        for env in container.get("env", []):
            assert env["name"] == "OMP_NUM_THREADS" or setting_exists(env["name"]), env
        # Kafka's credentials: the Secret's keys as files where the settings read them, no
        # Secret as environment variables
        assert not [e for e in container["envFrom"] if "secretRef" in e]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "kafka-credentials"]
        assert (mount["mountPath"], mount.get("readOnly")) == (SECRETS_DIR, True)
        [volume] = [v for v in pod_of(overlay, which)["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"] == {"secretName": "sensor-anomaly-kafka", "optional": True}
        assert all(setting_exists(prefix + key) for key in SECRET_KEYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_ports_match_the_worker(overlay: str) -> None:
    worker = containers(overlay)["worker"]
    config = configmap(overlay, "worker")
    [port] = worker["ports"]
    assert port["containerPort"] == int(config["WORKER_HTTP__PORT"])
    health = Health(liveness_timeout_s=60)
    health.model_loaded = health.partitions_assigned = True
    server = HealthServer("127.0.0.1", 0, Metrics().registry, health).start()
    try:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = worker[probe]["httpGet"]
            assert get["port"] in (port["name"], port["containerPort"])
            url = f"http://127.0.0.1:{server.port}{get['path']}"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200, (probe, get["path"])
    finally:
        server.stop()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_and_torch_threads_are_bounded(overlay: str) -> None:
    for which, container in containers(overlay).items():
        assert container["image"].startswith("ghcr.io/"), which
        assert container["imagePullPolicy"] == "Always"  # a tag moved is a new image
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        if which == "training":  # fitting uses the threads its CPU limit allows
            threads = next(e for e in container["env"] if e["name"] == "OMP_NUM_THREADS")
            assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
        else:  # scoring is one thread (WORKER_SCORE_THREADS): more spin and starve the client
            assert "OMP_NUM_THREADS" not in {e["name"] for e in container.get("env", [])}
            assert configmap(overlay, "worker")["WORKER_SCORE_THREADS"] == "1"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        if store_on_volume(overlay):
            assert mounts["/models"].get("readOnly", False) is (which == "worker")
        assert "/tmp" in mounts
    for kind in ("Deployment", "CronJob"):
        spec = find(overlay, kind)["spec"]
        pod = spec["template"]["spec"] if kind == "Deployment" else (
            spec["jobTemplate"]["spec"]["template"]["spec"])  # fmt: skip
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    cron = find(overlay, "CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    grace = find(overlay, "Deployment")["spec"]["template"]["spec"]
    config = configmap(overlay, "worker")
    one_batch = int(config["WORKER_BATCH__MAX_WAIT_MS"]) / 1000
    assert grace["terminationGracePeriodSeconds"] > one_batch + float(
        config["WORKER_KAFKA__FLUSH_TIMEOUT_S"]
    )


def store_on_volume(overlay: str) -> bool:
    return any(o["kind"] == "PersistentVolumeClaim" for o in render(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_model_store_is_the_shared_volume_or_one_bucket_for_both_roles(overlay: str) -> None:
    worker, training = configmap(overlay, "worker"), configmap(overlay, "training")
    location = worker["WORKER_STORE__PATH"]
    assert training["TRAINING_STORE__PATH"] == location
    pods = {"worker": find(overlay, "Deployment")["spec"]["template"]["spec"],
            "training": find(overlay, "CronJob")["spec"]["jobTemplate"]["spec"]["template"][
                "spec"]}  # fmt: skip
    claims = {v.get("persistentVolumeClaim", {}).get("claimName") for pod in pods.values()
              for v in pod["volumes"]} - {None}  # fmt: skip
    if store_on_volume(overlay):
        assert not location.startswith("s3://")
        assert claims == {find(overlay, "PersistentVolumeClaim")["metadata"]["name"]}
        return
    assert location.startswith("s3://"), overlay  # no volume: a bucket
    assert not claims
    assert worker["AWS_REGION"] == training["AWS_REGION"]
    for which, pod in pods.items():  # one identity per role, credentials the AWS way
        account = find(overlay, "ServiceAccount", which)
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
        [container] = pod["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "s3-credentials"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "s3-credentials"]
        assert volume["secret"] == {"secretName": "sensor-anomaly-s3", "optional": True}
        data = worker if which == "worker" else training
        assert data["AWS_SHARED_CREDENTIALS_FILE"] == mount["mountPath"] + "/credentials"
        assert "/models" not in {m["mountPath"] for m in container["volumeMounts"]}
    for policy in (o for o in render(overlay) if o["kind"] == "NetworkPolicy"):
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 443 in ports, policy["metadata"]["name"]  # HTTPS to the object store


def test_the_images_and_the_manifests_run_the_real_commands() -> None:
    """Each role runs the image of its own Dockerfile target, whose command is its own."""
    dockerfile = (REPO / "Dockerfile").read_text()
    targets = dict(re.findall(r"^FROM runtime AS (\w+)\n(?:.*\n)*?CMD (\[.*\])$", dockerfile,
                              flags=re.M))  # fmt: skip
    assert {t: json.loads(c) for t, c in targets.items()} == {
        "worker": ["anomaly-worker", "run"], "training": ["anomaly-train", "fit"]}  # fmt: skip
    assert "USER 10001:10001" in dockerfile
    for overlay in OVERLAYS:
        for which, container in containers(overlay).items():
            assert container["image"].split(":")[0].endswith(f"/sensor-anomaly-{which}")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for overlay in OVERLAYS:
        for container in containers(overlay).values():
            script, command = container["args"]
            assert script in scripts
            installed = Path(sys.executable).parent / script  # the console script pip made
            done = subprocess.run(
                [str(installed), command, "--help"], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert f"usage: {script}" in done.stdout


def test_the_prometheusrule_holds_exactly_the_plain_rules_file() -> None:
    plain = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    crd = yaml.safe_load((DEPLOY / "prometheus" / "prometheusrule.yaml").read_text())
    assert crd["spec"] == plain


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    rules = DEPLOY / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", "rules.yml"], cwd=rules,
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", "rules.test.yml"], cwd=rules,
                          capture_output=True, text=True)  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr
    tested = set(re.findall(r"alertname: (\w+)", (rules / "rules.test.yml").read_text()))
    alerts = {r["alert"] for g in yaml.safe_load((rules / "rules.yml").read_text())["groups"]
              for r in g["rules"]}  # fmt: skip
    assert tested == alerts  # every alert rule has a unit test


def exported_metric_names() -> set[str]:
    names = {"up"}
    succeeded = training_metrics.RunFigures(
        holdout_loss=1,
        threshold=1,
        promoted=True,
        model_version="v",
        rows_removed={"r": 1},
        succeeded=True,
    )
    failed = training_metrics.RunFigures()
    worker = Metrics()
    # a model loaded, as in service: its series (by model, and filled values by feature) exist
    worker.set_model("default", "v", threshold=1.0, created_at=0.0, features=("pressure",))
    registries = [worker.registry, *map(training_metrics.registry, (succeeded, failed))]
    for registry in registries:
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
            if family.type == "counter":  # one whose labels come with use (an asset id)
                names.add(f"{family.name}_total")
    return names


def test_every_metric_the_board_and_rules_query_is_exported() -> None:
    exported = exported_metric_names()
    for expr in [*dashboard_exprs(), *rule_exprs().values()]:
        for name in re.findall(r"\b(anomaly_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=<>])", expr):
            assert name in exported, (name, expr)


def test_the_board_has_the_panels_and_variables_operators_need() -> None:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"namespace", "asset", "model"} <= variables
    exprs = " ".join(dashboard_exprs())
    wanted = (
        "anomaly_records_total anomaly_open_episodes anomaly_episode_open anomaly_score_bucket "
        "anomaly_threshold anomaly_stage_seconds_bucket anomaly_decision_lag_seconds_bucket "
        "anomaly_consumer_lag_records anomaly_dead_letters_total anomaly_assets_tracked "
        "anomaly_model_info anomaly_model_created_timestamp_seconds anomaly_training_promoted "
        "anomaly_asset_value anomaly_asset_score anomaly_asset_threshold"
    )
    for metric in wanted.split():
        assert metric in exprs, metric
    for overlay in OVERLAYS:
        cm = find(overlay, "ConfigMap", "dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["sensor-anomaly.json"]) == board


CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"  # `make checkov`, pinned


def checkov(framework: str, *target: str) -> dict[str, Any]:
    """checkov's summary and failed checks for `target`, with the project's config (the
    checks skipped there are justified in docs/operations.md)."""
    done = subprocess.run(
        [str(CHECKOV), *target, "--framework", framework, "--config-file",
         str(REPO / ".checkov.yaml"), "--output", "json", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = json.loads(done.stdout)
    reports = found if isinstance(found, list) else [found]
    return {
        "passed": sum(r["summary"]["passed"] for r in reports),
        "failed": [
            (c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]
        ],
    }


@pytest.mark.skipif(not CHECKOV.is_file(), reason="checkov is not installed: make checkov")
def test_a_security_scanner_finds_nothing_unjustified(tmp_path: Path) -> None:
    """checkov over every rendered overlay and over the Dockerfile: nothing fails but what
    .checkov.yaml skips, each justified in docs/operations.md."""
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    kubernetes = checkov("kubernetes", "--directory", str(tmp_path))
    assert kubernetes["failed"] == []
    assert kubernetes["passed"] > 100 * len(OVERLAYS)
    dockerfile = checkov("dockerfile", "--file", str(REPO / "Dockerfile"))
    assert dockerfile["failed"] == []
    assert dockerfile["passed"] > 100
    skipped = yaml.safe_load((REPO / ".checkov.yaml").read_text())["skip-check"]
    operations = (REPO / "docs" / "operations.md").read_text()
    assert all(check in operations for check in skipped)
