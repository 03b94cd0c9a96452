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
from review.episodes import EpisodeIndex
from review.settings import ReviewSettings
from review.web import make_app
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
# The three roles: the worker and the review page (Deployments), the training job (CronJob),
# each with its settings' prefix and model, and the Secret its Kafka credentials come from as
# files (the review page has its own principal: docs/review.md).
ROLES = ("worker", "training", "review")
SETTINGS: dict[str, tuple[str, type[BaseModel]]] = {
    "worker": ("WORKER_", WorkerSettings),
    "training": ("TRAINING_", TrainingSettings),
    "review": ("REVIEW_", ReviewSettings),
}
KAFKA_SECRETS = {
    "worker": "sensor-anomaly-kafka",
    "training": "sensor-anomaly-kafka",
    "review": "sensor-anomaly-review",
}


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
    """The pod spec of a role: the training job's CronJob, the worker's or the review page's
    Deployment."""
    name = f"sensor-anomaly-{which}"
    if which == "training":
        spec: dict[str, Any] = find(overlay, "CronJob", name)["spec"]["jobTemplate"]["spec"]
        spec = spec["template"]["spec"]
    else:
        spec = find(overlay, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def containers(overlay: str) -> dict[str, dict[str, Any]]:
    found = {which: pod_of(overlay, which)["containers"] for which in ROLES}
    assert all([c["name"] for c in found[which]] == [which] for which in ROLES), found
    return {which: found[which][0] for which in ROLES}


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
    service = find(overlay, "Service", "sensor-anomaly-worker")
    deployment = find(overlay, "Deployment", "sensor-anomaly-worker")
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


def setting_exists(name: str, which: str) -> bool:
    """Whether `name` is one of role `which`'s settings (or an AWS variable)."""
    if name in AWS_VARIABLES:
        return True
    prefix, model = SETTINGS[which]
    return name.startswith(prefix) and has_field(
        model, name.removeprefix(prefix).lower().split("__")
    )


def settings_of(overlay: str, which: str, monkeypatch: pytest.MonkeyPatch) -> BaseModel:
    """Role `which`'s settings as its ConfigMap makes them (validated), its variables unset
    again afterwards."""
    data = configmap(overlay, which)
    with monkeypatch.context() as env:
        for name, value in data.items():
            env.setenv(name, value)
        return SETTINGS[which][1]()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_is_a_setting_with_a_valid_value(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for which in ROLES:
        data = configmap(overlay, which)
        unknown = [name for name in data if not setting_exists(name, which)]
        assert not unknown, f"{overlay} {which} ConfigMap sets unknown variables {unknown}"
        settings_of(overlay, which, monkeypatch)  # the ConfigMap's values pass validation
    for which, container in containers(overlay).items():
        prefix = SETTINGS[which][0]
        for env in container.get("env", []):
            assert env["name"] == "OMP_NUM_THREADS" or setting_exists(env["name"], which), env
        # the settings: the role's own ConfigMap; Kafka's credentials: the Secret's keys as
        # files where the settings read them, no Secret as environment variables
        own = find(overlay, "ConfigMap", f"sensor-anomaly-{which}-")["metadata"]["name"]
        assert container["envFrom"] == [{"configMapRef": {"name": own}}], (which, own)
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == SECRETS_DIR]
        assert mount.get("readOnly") is True, which
        [volume] = [v for v in pod_of(overlay, which)["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"] == {"secretName": KAFKA_SECRETS[which], "optional": True}
        assert all(setting_exists(prefix + key, which) for key in SECRET_KEYS), which
    # the review page's Secret holds its forms' key too (docs/review.md)
    assert setting_exists("REVIEW_AUTH__FORM_KEY", "review")


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
def test_probes_and_ports_match_the_review_page(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    review = containers(overlay)["review"]
    settings = settings_of(overlay, "review", monkeypatch)
    assert isinstance(settings, ReviewSettings)
    [port] = review["ports"]
    assert port["containerPort"] == settings.http.port, (port, settings.http)
    assert settings.http.host in ("0.0.0.0", "::"), settings.http  # the kubelet's probes reach it
    # the page the settings make; the kubelet asks from the node, without the identity
    # proxy's headers (any other page refuses such a request)
    client = make_app(settings, EpisodeIndex(settings.max_episodes)).test_client()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = review[probe]["httpGet"]
        assert get["port"] in (port["name"], port["containerPort"]), (probe, get)
        response = client.get(get["path"], environ_base={"REMOTE_ADDR": "192.0.2.1"})
        assert response.status_code == 200, (probe, get["path"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_and_network_policy_reaches_its_deployments_port(overlay: str) -> None:
    deployments = [o for o in render(overlay) if o["kind"] == "Deployment"]
    for which in ("worker", "review"):
        name = f"sensor-anomaly-{which}"
        labels = find(overlay, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        [port] = containers(overlay)[which]["ports"]
        service = find(overlay, "Service", name)["spec"]
        selected = [d["metadata"]["name"] for d in deployments if service["selector"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert selected == [name], (name, service["selector"])
        assert [p["targetPort"] for p in service["ports"]] == [port["name"]], name
        policy = find(overlay, "NetworkPolicy", name)["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items(), name
        ingress = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        assert ingress & {port["name"], port["containerPort"]}, (name, ingress)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_and_torch_threads_are_bounded(overlay: str) -> None:
    for which, container in containers(overlay).items():
        assert container["image"].startswith("ghcr.io/"), which
        assert container["imagePullPolicy"] == "Always", which  # a tag moved is a new image
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, which
        assert context["allowPrivilegeEscalation"] is False, which
        assert context["capabilities"]["drop"] == ["ALL"], which
        if which == "training":  # fitting uses the threads its CPU limit allows
            threads = next(e for e in container["env"] if e["name"] == "OMP_NUM_THREADS")
            assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
        elif which == "worker":
            # scoring is one thread (WORKER_SCORE_THREADS): more spin and starve the client
            assert "OMP_NUM_THREADS" not in {e["name"] for e in container.get("env", [])}
            assert configmap(overlay, "worker")["WORKER_SCORE_THREADS"] == "1"
        # (the review page's image has no torch: the Dockerfile's review target)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        if store_on_volume(overlay):  # only the training job writes the store
            assert mounts["/models"].get("readOnly", False) is (which != "training"), which
        assert "/tmp" in mounts, which
    for which in ROLES:
        pod = pod_of(overlay, which)
        assert pod["automountServiceAccountToken"] is False, which
        assert pod["securityContext"]["runAsNonRoot"] is True, which
        assert pod["securityContext"]["runAsUser"] == 10001, which
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", which
    cron = find(overlay, "CronJob", "sensor-anomaly-training")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    grace = pod_of(overlay, "worker")
    config = configmap(overlay, "worker")
    one_batch = int(config["WORKER_BATCH__MAX_WAIT_MS"]) / 1000
    assert grace["terminationGracePeriodSeconds"] > one_batch + float(
        config["WORKER_KAFKA__FLUSH_TIMEOUT_S"]
    )


def store_on_volume(overlay: str) -> bool:
    return any(o["kind"] == "PersistentVolumeClaim" for o in render(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_model_store_is_the_shared_volume_or_one_bucket_for_every_role(overlay: str) -> None:
    data = {which: configmap(overlay, which) for which in ROLES}
    location = data["worker"]["WORKER_STORE__PATH"]
    for which in ROLES:
        assert data[which][SETTINGS[which][0] + "STORE__PATH"] == location, which
    pods = {which: pod_of(overlay, which) for which in ROLES}
    claims = {v.get("persistentVolumeClaim", {}).get("claimName") for pod in pods.values()
              for v in pod["volumes"]} - {None}  # fmt: skip
    if store_on_volume(overlay):
        assert not location.startswith("s3://")
        assert claims == {find(overlay, "PersistentVolumeClaim")["metadata"]["name"]}
        for which, pod in pods.items():  # the claim where the settings say; only training writes
            [volume] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
            [container] = pod["containers"]
            [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["mountPath"] == location, which
            read_only = which != "training"
            assert mount.get("readOnly", False) is read_only, which
            assert volume["persistentVolumeClaim"].get("readOnly", False) is read_only, which
        return
    assert location.startswith("s3://"), overlay  # no volume: a bucket
    assert not claims
    assert len({d["AWS_REGION"] for d in data.values()}) == 1, data
    assert len({d.get("AWS_ENDPOINT_URL_S3") for d in data.values()}) == 1, data
    for which, pod in pods.items():  # one identity per role, credentials the AWS way
        account = find(overlay, "ServiceAccount", f"sensor-anomaly-{which}")
        assert pod["serviceAccountName"] == account["metadata"]["name"], which
        assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"], which
        [container] = pod["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "s3-credentials"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "s3-credentials"]
        assert volume["secret"] == {"secretName": "sensor-anomaly-s3", "optional": True}
        assert data[which]["AWS_SHARED_CREDENTIALS_FILE"] == mount["mountPath"] + "/credentials"
        assert "/models" not in {m["mountPath"] for m in container["volumeMounts"]}, which
    for policy in (o for o in render(overlay) if o["kind"] == "NetworkPolicy"):
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 443 in ports, policy["metadata"]["name"]  # HTTPS to the object store


def test_the_images_and_the_manifests_run_the_real_commands() -> None:
    """Each role runs the image of its own Dockerfile target, whose command is its own."""
    dockerfile = (REPO / "Dockerfile").read_text()
    targets = dict(re.findall(r"^FROM runtime AS (\w+)\n(?:.*\n)*?CMD (\[.*\])$", dockerfile,
                              flags=re.M))  # fmt: skip
    commands = {t: json.loads(c) for t, c in targets.items()}
    assert commands == {
        "worker": ["anomaly-worker", "run"], "training": ["anomaly-train", "fit"],
        "review": ["anomaly-review", "run"]}  # fmt: skip
    assert "USER 10001:10001" in dockerfile
    for overlay in OVERLAYS:
        for which, container in containers(overlay).items():
            assert container["image"].split(":")[0].endswith(f"/sensor-anomaly-{which}")
            assert container["args"] == commands[which], (overlay, which)
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


def test_the_boards_asset_tables_link_to_the_review_page() -> None:
    """Each table that lists assets links an asset to its episode on the review page (the
    path the alert's `review` annotation carries, under the board's `review` variable)."""
    board = dashboard()
    [review] = [v for v in board["templating"]["list"] if v["name"] == "review"]
    assert review["type"] == "textbox"
    linked = {}
    for panel in board["panels"]:
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            if override["matcher"] == {"id": "byName", "options": "asset_id"}:
                links = [p["value"] for p in override["properties"] if p["id"] == "links"]
                linked[panel["title"]] = [link["url"] for found in links for link in found]
    tables = {p["title"] for p in board["panels"] if p["type"] == "table"
              and any("asset_id" in t["expr"] for t in p.get("targets", []))}  # fmt: skip
    assert tables
    assert set(linked) == tables, tables ^ set(linked)
    assert all(urls == ["${review}/assets/${__value.raw}"] for urls in linked.values()), linked
    # the asset-in-alarm row: each of its panels links to the asset it shows
    row = [p for p in board["panels"] if p["title"].startswith("Asset in alarm")]
    assert len(row) == 2
    for panel in row:
        assert [link["url"] for link in panel["links"]] == ["${review}/assets/${asset}"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    [asset] = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "AnomalyAssetInAlarm"]  # fmt: skip
    assert asset["annotations"]["review"] == "/assets/{{ $labels.asset_id }}"


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
