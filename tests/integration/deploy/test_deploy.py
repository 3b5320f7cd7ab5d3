"""Deployment files checked against the code they deploy.

- docker-compose.yml (and the GPU override) with Debian's `docker-compose config -q`, then its resolved form;
- deploy/prometheus with `promtool check config`, `check rules` and the alert unit tests (`test rules`);
- every Kubernetes manifest under deploy/k8s parsed with pyyaml: probes, resources, volumes where the
  settings expect them, env names that exist in watchbuy/settings.py, HPA → Deployment, Job → indexer;
- the Grafana dashboard: every PromQL expression is valid (promtool) and names only metrics that the real
  service exports (a real uvicorn server with the real models and the slice index, scraped after requests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.data import PROJECT_DIR, SLICE_STREAM
from support.live_server import LiveServer

from watchbuy.settings import Settings

COMPOSE_FILE = PROJECT_DIR / "docker-compose.yml"


COMPOSE_GPU = PROJECT_DIR / "deploy" / "compose.gpu.yml"


PROMETHEUS_DIR = PROJECT_DIR / "deploy" / "prometheus"


GRAFANA_DIR = PROJECT_DIR / "deploy" / "grafana"


DASHBOARD = GRAFANA_DIR / "dashboards" / "watchbuy.json"


K8S_DIR = PROJECT_DIR / "deploy" / "k8s"


SETTINGS_ENV = {f"WATCHBUY_{name.upper()}" for name in Settings.model_fields}


#: Metric families the dashboard must show (request rate, stage latency, batch sizes, errors, streams, Redis).
DASHBOARD_MUST_USE = {
    "watchbuy_requests_total", "watchbuy_request_seconds_bucket", "watchbuy_stage_seconds_bucket",
    "watchbuy_batch_size_bucket", "watchbuy_errors_total", "watchbuy_loaded_streams", "watchbuy_redis_up",
}


#: Series Prometheus makes itself (alerts may use them; the dashboard does not).
PROMETHEUS_SERIES = {"up"}


def tool(name: str) -> str:
    """A command-line tool from apt (.ci/run installs it): skip locally when missing, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(command: list[str], cwd: Path = PROJECT_DIR) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def compose_env() -> dict[str, str]:
    """The environment without overrides of the compose defaults, so the checks see the file's own values."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("WATCHBUY_", "GRAFANA_", "COMPOSE_"))}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` resolves it (anchors, defaults, paths)."""
    binary = tool("docker-compose")
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], cwd=PROJECT_DIR, env=compose_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_files_are_valid() -> None:
    binary = tool("docker-compose")
    for files in ([COMPOSE_FILE], [COMPOSE_FILE, COMPOSE_GPU]):
        command = [binary, *[arg for f in files for arg in ("-f", str(f))], "config", "-q"]
        result = subprocess.run(command, cwd=PROJECT_DIR, env=compose_env(), capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, f"{command}: {result.stderr}"


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container path → {"source", "target", "read_only"} (docker-compose 1.x resolves to `src:dst[:mode]`)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {"source": source, "target": target, "read_only": mode == ["ro"]}
        found[volume["target"]] = volume
    return found


def test_compose_services_fit_the_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"api", "redis", "prometheus", "grafana", "indexer"} <= set(services)
    api, indexer = services["api"], services["indexer"]
    for service in (api, indexer):
        env = service["environment"]
        assert set(env) <= SETTINGS_ENV, f"unknown settings: {set(env) - SETTINGS_ENV}"
        assert env["WATCHBUY_REDIS_URL"] == "redis://redis:6379/0"
        assert str(service["user"]).split(":")[0] not in {"0", "root"}
        paths = mounts(service)
        assert env["WATCHBUY_MODEL_DIR"] in paths and paths[env["WATCHBUY_MODEL_DIR"]].get("read_only")
        assert env["WATCHBUY_INDEX_ROOT"] in paths
    assert mounts(indexer)[indexer["environment"]["WATCHBUY_INDEX_ROOT"]].get("read_only") is not True
    assert indexer["environment"]["WATCHBUY_CATALOGUE_ROOT"] in mounts(indexer)
    assert indexer["entrypoint"] == ["python", "-m", "watchbuy", "build-index"]
    assert indexer["command"][0] == "--stream"
    assert "tools" in indexer.get("profiles", [])  # one-shot: `docker compose run indexer --stream ...`
    assert any(str(port.get("target")) == api["environment"]["WATCHBUY_PORT"] for port in api["ports"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert float(api["environment"]["WATCHBUY_DRAIN_SECONDS"]) > 0
    assert "redis" in api["depends_on"]

    prometheus = mounts(services["prometheus"])
    assert Path(prometheus["/etc/prometheus/prometheus.yml"]["source"]) == PROMETHEUS_DIR / "prometheus.yml"
    assert Path(prometheus["/etc/prometheus/alerts.yml"]["source"]) == PROMETHEUS_DIR / "alerts.yml"
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(job for job in scrape["scrape_configs"] if job["job_name"] == "watchbuy")
    assert job["static_configs"][0]["targets"] == [f"api:{api['environment']['WATCHBUY_PORT']}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"

    grafana = mounts(services["grafana"])
    assert Path(grafana["/etc/grafana/provisioning"]["source"]) == GRAFANA_DIR / "provisioning"
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "watchbuy.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert Path(grafana[dashboards_path]["source"]) == GRAFANA_DIR / "dashboards"
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    source = datasource["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    used_uids = {target["datasource"]["uid"] for panel in panels(dashboard) for target in panel.get("targets", [])}
    assert used_uids == {source["uid"]}


def test_dockerfile_is_non_root_with_volumes_healthcheck_and_a_gpu_variant() -> None:
    text = (PROJECT_DIR / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)
    runtime = next(stage for stage in stages if re.match(r"\S+ AS runtime\b", stage))
    user = re.search(r"(?m)^USER (\S+)", runtime)
    assert user and user.group(1).split(":")[0] not in {"0", "root"}
    assert re.search(r"(?m)^HEALTHCHECK .*\n?.*/healthz", runtime)
    assert re.search(r'(?m)^VOLUME \["/models", "/indexes"\]', runtime)
    env = dict(re.findall(r"(WATCHBUY_[A-Z_]+)=(\S+)", runtime))
    assert set(env) <= SETTINGS_ENV
    assert env["WATCHBUY_MODEL_DIR"] == "/models" and env["WATCHBUY_INDEX_ROOT"] == "/indexes"
    assert re.search(r"(?m)^ARG RUNTIME=cpu$", text) and "FROM base-${RUNTIME} AS runtime" in text
    assert re.search(r"(?m)^ARG TENSORRT_IMAGE=nvcr\.io/nvidia/tensorrt:", text)
    assert re.search(r"(?m)^FROM \$\{TENSORRT_IMAGE\} AS base-gpu$", text)
    assert 'pip install ".[${RUNTIME}]"' in text
    ignored = (PROJECT_DIR / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)
    run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """Every base manifest (kind, name) → document; each file listed in kustomization.yaml."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"not in kustomization: {present - listed}; missing files: {listed - present}"
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    for name in sorted(listed):
        for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
            assert doc and doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), name
            documents[(doc["kind"], doc["metadata"]["name"])] = doc
    return documents


def of_kind(documents: dict[tuple[str, str], dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for (k, _), doc in documents.items() if k == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def check_env(container: dict[str, Any], documents: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    """The container's settings (ConfigMap via envFrom plus env); every name must be a setting."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = documents[("ConfigMap", source["configMapRef"]["name"])]
        env.update(config["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    assert set(env) <= SETTINGS_ENV, f"unknown settings: {set(env) - SETTINGS_ENV}"
    return env


def mounted(container: dict[str, Any], spec: dict[str, Any], path: str) -> tuple[dict, dict]:
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == path), None)
    assert mount is not None, f"{container['name']}: nothing mounted at {path}"
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    return mount, volume


def test_k8s_api_deployment_probes_resources_and_volumes(k8s: dict) -> None:
    deployment = k8s[("Deployment", "watchbuy-api")]
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    env = check_env(container, k8s)
    port = next(p for p in container["ports"] if p["containerPort"] == int(env["WATCHBUY_PORT"]))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in (port["name"], port["containerPort"]), probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert env["WATCHBUY_REDIS_URL"] == "redis://redis:6379/0"
    redis_service = k8s[("Service", "redis")]
    assert redis_service["spec"]["ports"][0]["port"] == 6379
    # Drain: readiness fails for WATCHBUY_DRAIN_SECONDS, then in-flight requests get uvicorn's 20 s.
    assert float(env["WATCHBUY_DRAIN_SECONDS"]) > 0
    assert spec["terminationGracePeriodSeconds"] > float(env["WATCHBUY_DRAIN_SECONDS"]) + 20
    assert container["readinessProbe"]["periodSeconds"] < float(env["WATCHBUY_DRAIN_SECONDS"])

    mount, volume = mounted(container, spec, env["WATCHBUY_MODEL_DIR"])
    assert mount.get("readOnly") is True and volume["persistentVolumeClaim"]["claimName"] == "watchbuy-models"
    mount, volume = mounted(container, spec, env["WATCHBUY_INDEX_ROOT"])
    claim = k8s[("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # shared by the indexer and every replica

    service = k8s[("Service", "watchbuy-api")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])


def test_the_watch_workers_run_the_worker_with_the_api_settings(compose: dict[str, Any], k8s: dict) -> None:
    worker = compose["services"]["watch-worker"]
    assert worker["entrypoint"] == ["python", "-m", "watchbuy", "watch-worker"]
    assert set(worker["environment"]) <= SETTINGS_ENV
    assert worker["environment"]["WATCHBUY_REDIS_URL"] == "redis://redis:6379/0"
    assert compose["services"]["api"]["environment"]["WATCHBUY_WATCH_WORKERS"] == "true"
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(job for job in scrape["scrape_configs"] if job["job_name"] == "watchbuy-watch-worker")
    assert job["dns_sd_configs"][0]["port"] == int(worker["environment"]["WATCHBUY_WORKER_METRICS_PORT"])
    deployment = k8s[("Deployment", "watchbuy-watch-worker")]
    (container,) = pod_spec(deployment)["containers"]
    assert container["command"] == ["python", "-m", "watchbuy", "watch-worker"]
    env = check_env(container, k8s)
    assert env["WATCHBUY_REDIS_URL"] and env["WATCHBUY_WATCH_WORKERS"] == "true"
    assert int(env["WATCHBUY_WORKER_METRICS_PORT"]) == container["ports"][0]["containerPort"]
    mounted(container, pod_spec(deployment), env["WATCHBUY_MODEL_DIR"])
    mounted(container, pod_spec(deployment), env["WATCHBUY_INDEX_ROOT"])


def test_k8s_hpa_targets_the_deployment(k8s: dict) -> None:
    (hpa,) = of_kind(k8s, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert ("Deployment", target["name"]) in k8s
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    resources = {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"}
    (container,) = pod_spec(k8s[("Deployment", target["name"])])["containers"]
    assert resources and resources <= set(container["resources"]["requests"])  # utilisation needs requests
    (pdb,) = of_kind(k8s, "PodDisruptionBudget")
    deployment = k8s[("Deployment", target["name"])]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_k8s_indexer_job_runs_the_indexer_on_the_shared_store(k8s: dict) -> None:
    (job,) = of_kind(k8s, "Job")
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "watchbuy", "build-index"]
    assert "--stream" in container["args"]
    assert spec["restartPolicy"] in {"Never", "OnFailure"}
    env = check_env(container, k8s)
    mount, volume = mounted(container, spec, env["WATCHBUY_INDEX_ROOT"])
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    (api,) = pod_spec(k8s[("Deployment", "watchbuy-api")])["containers"]
    _, api_volume = mounted(api, pod_spec(k8s[("Deployment", "watchbuy-api")]), env["WATCHBUY_INDEX_ROOT"])
    assert volume["persistentVolumeClaim"]["claimName"] == api_volume["persistentVolumeClaim"]["claimName"]
    mounted(container, spec, env["WATCHBUY_CATALOGUE_ROOT"])
    mounted(container, spec, env["WATCHBUY_MODEL_DIR"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["image"].split(":")[0] == api["image"].split(":")[0]


def test_k8s_redis_and_claims(k8s: dict) -> None:
    redis = k8s[("Deployment", "redis")]
    (container,) = pod_spec(redis)["containers"]
    assert container["image"].startswith("redis:") and container["resources"]["limits"]["memory"]
    selector = k8s[("Service", "redis")]["spec"]["selector"]
    assert selector.items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    claims = {doc["metadata"]["name"] for doc in of_kind(k8s, "PersistentVolumeClaim")}
    used = {v["persistentVolumeClaim"]["claimName"] for kind in ("Deployment", "Job") for w in of_kind(k8s, kind)
            for v in pod_spec(w).get("volumes", []) if "persistentVolumeClaim" in v}
    assert used <= claims, f"claims used but not defined: {used - claims}"


def test_k8s_gpu_overlay_requests_a_gpu(k8s: dict) -> None:
    overlay_dir = K8S_DIR / "gpu"
    overlay = yaml.safe_load((overlay_dir / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../"]
    assert {image["newTag"] for image in overlay["images"]} == {"gpu"}
    patched_kinds = set()
    for entry in overlay["patches"]:
        patch = yaml.safe_load((overlay_dir / entry["path"]).read_text())
        base = k8s[(patch["kind"], patch["metadata"]["name"])]  # patches a base object
        base_names = {c["name"] for c in pod_spec(base)["containers"]}
        for container in pod_spec(patch)["containers"]:
            assert container["name"] in base_names  # strategic merge by name: a typo would add a container
            for kind in ("requests", "limits"):
                assert int(container["resources"][kind]["nvidia.com/gpu"]) >= 1
            # TensorRT engines are cached in WATCHBUY_MODEL_DIR/engines: the models mount is writable on GPUs
            models = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
            assert models["readOnly"] is False
        assert pod_spec(patch)["tolerations"][0]["key"] == "nvidia.com/gpu"
        patched_kinds.add(patch["kind"])
    assert patched_kinds == {"Deployment", "Job"}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", text or "")
        if match:
            exprs.append(match.group(1))
    return exprs


def as_promql(expr: str) -> str:
    """Grafana's variables replaced by what they expand to."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                   "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (strings, label matchers, ranges, grouping and functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', as_promql(expr))
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(watchbuy_stage_seconds_bucket{instance=~"$instance",'
            ' route="/x{y}"}[$__rate_interval]))) / on (instance) group_left sum(up) > 1e-9 and watchbuy_b == bool 1')
    assert metric_names(expr) == {"watchbuy_stage_seconds_bucket", "up", "watchbuy_b"}


def exported_names(exposition: str) -> set[str]:
    """Series names /metrics exports, with each family's type suffixes (families without samples too)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_dashboard_promql_is_valid(tmp_path: Path) -> None:
    promtool = tool("promtool")
    exprs = dashboard_expressions(json.loads(DASHBOARD.read_text()))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": as_promql(expr)} for i, expr in enumerate(exprs)]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    run([promtool, "check", "rules", "dashboard_rules.yml"], cwd=tmp_path)


@pytest.mark.integration
def test_dashboard_and_alerts_use_only_metrics_the_service_exports(
    model_dir: Path, slice_index_root: Path, slice_dir: Path, tmp_path: Path
) -> None:
    server = LiveServer(tmp_path / "server.log", {
        "WATCHBUY_MODEL_DIR": str(model_dir), "WATCHBUY_INDEX_ROOT": str(slice_index_root),
    })
    frame = next((slice_dir / "frames").iterdir()).read_bytes()
    server.start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=60.0) as http:
            answer = http.post("/identify", data={"stream_id": SLICE_STREAM},
                               files=[("frames", ("frame.jpg", frame, "image/jpeg"))])
            assert answer.status_code == 200, answer.text
            assert http.post("/identify", content=b"{", headers={"content-type": "application/json"}).status_code == 400
            assert http.get(f"/streams/{SLICE_STREAM}").status_code == 200
            scraped = http.get("/metrics")
            assert scraped.status_code == 200
    finally:
        server.stop()
    exported = exported_names(scraped.text)

    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions(dashboard)))
    assert DASHBOARD_MUST_USE <= used, f"the dashboard lacks {DASHBOARD_MUST_USE - used}"
    assert used <= exported, f"the dashboard uses metrics the service does not export: {sorted(used - exported)}"

    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alert_metrics = set().union(*(metric_names(rule["expr"]) for group in alerts["groups"] for rule in group["rules"]))
    unknown = alert_metrics - exported - PROMETHEUS_SERIES
    assert not unknown, f"alerts use metrics the service does not export: {sorted(unknown)}"
