"""The deploy files, checked without a Docker engine or a cluster: parsed, cross-referenced, validated by real tools.

Compose and Kubernetes YAML are parsed and every reference is followed (build files, mounts, services, ports,
images, config keys); the Caddyfile is adapted by the real ``caddy`` binary when it is installed; configuration
handed to Avaluma (compose environment, the Kubernetes ConfigMap) is validated by Avaluma's own config loader.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from avaluma.core import telemetry
from avaluma.core.config import Config
from avaluma.core.config_loader import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
COLLECTOR = DEPLOY / "otel" / "collector.yaml"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"

#: The Avatar Server's ports (config defaults: server.port, http.port).
GRPC_PORT, HTTP_PORT = 8080, 8081


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), f"kustomization lists {resource}, which does not exist"
        for doc in load_all(K8S / resource):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {k: str(v) for k, v in env.items() if k != "<<"} | {k: str(v) for k, v in env.get("<<", {}).items()}


def interpolate_defaults(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with nothing set: the default (or a stand-in)."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m.group(2) or f"<{m.group(1)}>", value)


def host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.split("//")[-1], int(port)


# --- compose --------------------------------------------------------------------------------------------------------


def test_compose_runs_the_whole_system(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"livekit", "triton", "avatar-server", "agent", "caddy", "otel-collector"}
    triton = compose["services"]["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "--dev" in compose["services"]["livekit"]["command"]


def test_compose_references_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], f"{name} depends on unknown service {dependency}"


def exposed_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    ports |= {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}
    return ports


def test_compose_upstreams_and_endpoints_point_at_ports_that_are_served(compose: dict[str, Any]) -> None:
    services = compose["services"]
    caddy_env = env_of(services["caddy"])
    for variable in ("AVALUMA_GRPC_UPSTREAM", "AVALUMA_HTTP_UPSTREAM", "LIVEKIT_UPSTREAM"):
        host, port = host_port(caddy_env[variable])
        assert host in services and port in exposed_ports(services[host]), variable
    assert host_port(caddy_env["AVALUMA_GRPC_UPSTREAM"]) == ("avatar-server", GRPC_PORT)
    assert host_port(caddy_env["AVALUMA_HTTP_UPSTREAM"]) == ("avatar-server", HTTP_PORT)

    collector = yaml.safe_load(COLLECTOR.read_text())
    otlp_ports = {host_port(p["endpoint"])[1] for p in collector["receivers"]["otlp"]["protocols"].values()}
    for name, service_name in (("avatar-server", "avaluma-server"), ("agent", "avaluma-agent")):
        env = env_of(services[name])
        host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host == "otel-collector" and port in otlp_ports and port in exposed_ports(services[host])
        assert env["OTEL_SERVICE_NAME"] == service_name

    agent_server = env_of(services["agent"])["AVALUMA_AGENT__AVATAR__SERVER"]
    assert host_port(agent_server) == ("avatar-server", GRPC_PORT)
    assert host_port(env_of(services["avatar-server"])["AVALUMA_LIPSYNC__OPTIONS__URL"]) == ("triton", 8001)


def test_compose_environment_is_valid_avaluma_configuration(compose: dict[str, Any]) -> None:
    for name in ("avatar-server", "agent"):
        env = {k: interpolate_defaults(v) for k, v in env_of(compose["services"][name]).items()}
        config = load_config(env={k: v for k, v in env.items() if k.startswith("AVALUMA_")})
        assert isinstance(config, Config)
    server = load_config(
        env={k: interpolate_defaults(v) for k, v in env_of(compose["services"]["avatar-server"]).items()}
    )
    assert server.lipsync.name == "triton" and server.lipsync.options["url"] == "triton:8001"


def test_env_example_names_every_variable_compose_requires(compose: dict[str, Any]) -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = {line.split("=")[0] for line in (DEPLOY / ".env.example").read_text().splitlines() if "=" in line}
    assert required and required <= example


# --- Dockerfiles ----------------------------------------------------------------------------------------------------


DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_what_exists_and_its_ignore_file_lets_it_through(dockerfile: Path) -> None:
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    assert sources, "copies the project"
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
        assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (
            f"{dockerfile.name}: {source} is excluded by its .dockerignore"
        )


def test_server_images_serve_on_the_ports_compose_and_kubernetes_use() -> None:
    for name in ("server.Dockerfile", "server-gpu.Dockerfile"):
        text = (DOCKER / name).read_text()
        assert re.search(rf"EXPOSE .*\b{GRPC_PORT}\b.*\b{HTTP_PORT}\b", text)
        assert f"AVALUMA_SERVER__PORT={GRPC_PORT}" in text and f"AVALUMA_HTTP__PORT={HTTP_PORT}" in text
        assert 'ENTRYPOINT ["avaluma", "serve"]' in text
        assert "grpc_health.py" in text
    assert (DOCKER / "server-gpu.Dockerfile").read_text().count("nvidia/cuda:") == 1


def test_the_container_health_check_speaks_grpc_health() -> None:
    source = (DOCKER / "grpc_health.py").read_text()
    compile(source, "grpc_health.py", "exec")
    assert "health_pb2_grpc.HealthStub" in source


# --- Caddy ------------------------------------------------------------------------------------------------------------


def test_caddyfile_defaults_match_compose(compose: dict[str, Any]) -> None:
    text = CADDYFILE.read_text()
    caddy_env = env_of(compose["services"]["caddy"])
    for variable, value in caddy_env.items():
        if variable.endswith("UPSTREAM"):
            assert f"{{${variable}:{value}}}" in text, f"the Caddyfile's default for {variable} is not {value}"
    mounts = compose["services"]["caddy"]["volumes"]
    assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in mounts


def test_caddy_adapts_the_caddyfile_to_https_with_an_h2c_grpc_upstream(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy): the Caddyfile is only parsed by caddy itself")
    result = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    adapted = json.loads(result.stdout)
    text = json.dumps(adapted)
    (server,) = adapted["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    assert '"versions": ["h2c", "2"]' in text, "gRPC goes to the server as cleartext HTTP/2"
    assert '"flush_interval": -1' in text, "streams are not buffered"
    assert '"application/grpc*"' in text
    for upstream in (f"avatar-server:{GRPC_PORT}", f"avatar-server:{HTTP_PORT}", "livekit:7880"):
        assert f'"dial": "{upstream}"' in text
    assert adapted["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


# --- OpenTelemetry collector ------------------------------------------------------------------------------------------


def test_collector_pipelines_use_defined_components_and_hash_user_content() -> None:
    config = yaml.safe_load(COLLECTOR.read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is not defined under {kind}"
    (action,) = config["processors"]["attributes/user-content"]["actions"]
    from avaluma.core.telemetry import USER_CONTENT_PREFIX

    assert re.match(action["pattern"], USER_CONTENT_PREFIX + "transcript")
    assert "attributes/user-content" in config["service"]["pipelines"]["traces"]["processors"]


# --- Kubernetes -------------------------------------------------------------------------------------------------------


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def test_kubernetes_services_select_deployments_and_target_named_ports(k8s: dict[tuple[str, str], Any]) -> None:
    services = [doc for (kind, _), doc in k8s.items() if kind == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        (deployment,) = [
            d
            for (kind, _), d in k8s.items()
            if kind == "Deployment" and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= selector.items()
        port_names = {p["name"] for c in containers(deployment) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']}: {port['targetPort']}"


def test_avatar_server_is_probed_with_grpc_health_on_its_grpc_port(k8s: dict[tuple[str, str], Any]) -> None:
    (server,) = containers(k8s[("Deployment", "avatar-server")])
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": HTTP_PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"] == {"port": GRPC_PORT}, probe
    config = yaml.safe_load(k8s[("ConfigMap", "avaluma-server-config")]["data"]["config.yaml"])
    parsed = Config.model_validate(config)
    assert (parsed.server.port, parsed.http.port, parsed.server.host) == (GRPC_PORT, HTTP_PORT, "0.0.0.0")
    assert host_port(parsed.lipsync.options["url"]) == ("triton", 8001)
    mount = next(m for m in server["volumeMounts"] if m["name"] == "config")
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["AVALUMA_CONFIG"] == mount["mountPath"] + "/config.yaml"
    grace = k8s[("Deployment", "avatar-server")]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > parsed.server.drain_timeout_s + parsed.server.shutdown_grace_s, "the pod outlives its drain"


def test_triton_requests_a_gpu_and_is_probed(k8s: dict[tuple[str, str], Any]) -> None:
    (triton,) = containers(k8s[("Deployment", "triton")])
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_every_image_is_named_in_the_kustomization(k8s: dict[tuple[str, str], Any]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    ours = {i["name"] for i in kustomization["images"]}
    used = {c["image"] for (kind, _), d in k8s.items() if kind == "Deployment" for c in containers(d)}
    assert {image for image in used if image.startswith("avaluma-")} == ours


def test_ingress_routes_every_grpc_service_to_the_grpc_port(k8s: dict[tuple[str, str], Any]) -> None:
    from avaluma.core.server.app import SERVICE_NAMES

    grpc_ingress = k8s[("Ingress", "avatar-server-grpc")]
    assert grpc_ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    (rule,) = grpc_ingress["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert {f"/{name}" for name in SERVICE_NAMES} <= set(paths)
    assert all(s == {"name": "avatar-server", "port": {"name": "grpc"}} for s in paths.values())
    (http_rule,) = k8s[("Ingress", "avatar-server-http")]["spec"]["rules"]
    assert http_rule["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}


def test_kubernetes_collector_config_is_the_same_as_compose(k8s: dict[tuple[str, str], Any]) -> None:
    in_cluster = yaml.safe_load(k8s[("ConfigMap", "otel-collector-config")]["data"]["config.yaml"])
    assert in_cluster == yaml.safe_load(COLLECTOR.read_text()), "deploy/k8s/otel-collector.yaml drifted"


def test_avatar_server_autoscales_on_its_active_sessions(k8s: dict[tuple[str, str], Any]) -> None:
    hpa = k8s[("HorizontalPodAutoscaler", "avatar-server")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) in k8s and target["kind"] == "Deployment"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "avaluma_sessions_active"
    # The metric the adapter serves is the one the server exports (OTel name, dots -> underscores).
    adapter = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"]: rule["metricsQuery"] for rule in adapter["rules"]["external"]}
    assert telemetry.ACTIVE_SESSIONS.name.replace(".", "_") in served["avaluma_sessions_active"]
    assert telemetry.SESSIONS_FREE_NAME.replace(".", "_") in served["avaluma_sessions_free"]
    config = yaml.safe_load(k8s[("ConfigMap", "avaluma-server-config")]["data"]["config.yaml"])
    limit = Config.model_validate(config).server.max_sessions
    assert 0 < float(metric["external"]["target"]["averageValue"]) < limit
    assert Config.model_validate(config).server.drain_timeout_s > 0, "a scale-down drains before ending sessions"
