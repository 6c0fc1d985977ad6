"""The deployment files, checked by the tools of their ecosystems and against our settings.

`docker-compose config` (Debian's docker-compose), `kubernetes-validate`, `hadolint`,
`nginx -t`, `haproxy -c`, and envsubst as the nginx image runs it. Each check is also run
once on a deliberately broken copy, so a check that stopped checking would fail here too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import nginx
from gateway.cli.cluster import find_program, write_nginx_config
from gateway.settings import Settings, load_settings
from gateway.transport.ports import INTERNAL_PATHS
from tests.support.gateways import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy.cfg"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
DEFAULTS = Settings.model_construct()
UVICORN_SHUTDOWN_MARGIN = 5.0
"""Seconds uvicorn waits after the drain (`timeout_graceful_shutdown` in gateway/cli.py)."""


def program(name: str) -> str:
    """A checking tool: from this Python's scripts directory (the test extra), else PATH."""
    found = find_program(name, sysconfig.get_path("scripts")) or find_program(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/system-deps.sh and `make install-test`")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def seconds(duration: str) -> float:
    """A compose/nginx duration such as ``30s``, ``2m`` or ``120``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", duration.strip())
    assert match, f"not a duration: {duration!r}"
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match[2]]
    return float(match[1]) * scale


# docker compose


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    compose = program("docker-compose")
    return run(compose, "-f", str(path), "--project-directory", str(REPO_ROOT), "config", "-q")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def gateway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("gateway")}


def test_compose_file_passes_docker_compose_config() -> None:
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("condition: service_healthy", "when: up"))
    result = compose_config(broken)
    assert result.returncode != 0 and "depends_on" in result.stderr


def test_compose_runs_three_distinct_replicas_on_one_redis(compose: dict[str, Any]) -> None:
    services = gateway_services(compose)
    assert len(services) == 3
    environments = [service["environment"] for service in services.values()]
    assert len({environment["GATEWAY_NODE_ID"] for environment in environments}) == 3
    assert {environment["GATEWAY_REDIS_URL"] for environment in environments} == {
        "redis://redis:6379/0"
    }
    for service in services.values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_environment_names_only_real_settings(compose: dict[str, Any]) -> None:
    for service in gateway_services(compose).values():
        for variable in service["environment"]:
            name = variable.removeprefix("GATEWAY_").lower()
            assert name in Settings.model_fields, f"{variable} is not a gateway setting"


def test_compose_replicas_keep_their_internal_port_off_nginx(compose: dict[str, Any]) -> None:
    upstreams = compose["services"]["nginx"]["environment"]["NGINX_UPSTREAM_SERVERS"]
    public_ports = set(re.findall(r"server [\w.-]+:(\d+);", upstreams))
    assert public_ports == {"8000"}
    for name, service in gateway_services(compose).items():
        internal = service["environment"]["GATEWAY_INTERNAL_PORT"]
        assert internal not in public_ports, name
        assert internal in service["expose"], name
        for published in service.get("ports", []):
            host, _, container = published.rsplit(":", 2)
            assert host == "127.0.0.1" and container == internal, (name, published)


def test_compose_stop_grace_period_outlasts_the_drain(compose: dict[str, Any]) -> None:
    for name, service in gateway_services(compose).items():
        drain = float(service["environment"].get("GATEWAY_DRAIN_SECONDS", DEFAULTS.drain_seconds))
        grace = seconds(service["stop_grace_period"])
        assert grace > drain + UVICORN_SHUTDOWN_MARGIN, name


def test_compose_redis_persists_with_aof_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_compose_nginx_renders_the_shared_template_for_every_replica(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in service["volumes"]
    assert service["ports"] == ["8000:8000"]
    environment = service["environment"]
    assert nginx.placeholders(nginx.TEMPLATE.read_text()) <= set(environment)
    upstreams = re.findall(r"server ([\w.-]+):8000;", environment["NGINX_UPSTREAM_SERVERS"])
    assert sorted(upstreams) == sorted(gateway_services(compose))
    assert {dep["condition"] for dep in service["depends_on"].values()} == {"service_healthy"}
    assert set(service["depends_on"]) == set(gateway_services(compose))


def test_envsubst_renders_the_template_as_gateway_cluster_does(compose: dict[str, Any]) -> None:
    """What the nginx image does at start (envsubst over its defined variables) and ours agree."""
    values = compose["services"]["nginx"]["environment"]
    environment = {**os.environ, **values}
    defined = " ".join(f"${{{name}}}" for name in environment)
    template = nginx.TEMPLATE.read_text()
    result = subprocess.run(
        [program("envsubst"), defined],
        input=template,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == nginx.render_template(template, values)
    assert "server gateway-1:8000; server gateway-2:8000;" in result.stdout


# Kubernetes


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def k8s_resources(kind: str) -> dict[str, dict[str, Any]]:
    """The manifests of one kind, by name."""
    return {
        document["metadata"]["name"]: document
        for _, document in k8s_documents()
        if document["kind"] == kind
    }


def k8s_resource(kind: str) -> dict[str, Any]:
    [found] = k8s_resources(kind).values()
    return found


def gateway_container() -> dict[str, Any]:
    [container] = k8s_resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def container_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in gateway_container()["ports"]}


def container_env(name: str) -> str:
    [value] = [
        variable["value"] for variable in gateway_container()["env"] if variable["name"] == name
    ]
    return str(value)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_pass_kubernetes_validate(version: str) -> None:
    kinds = set()
    for name, document in k8s_documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
        kinds.add(document["kind"])
    expected = {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "NetworkPolicy"}
    assert kinds == expected | {"PodDisruptionBudget", "ConfigMap"}


def test_kubernetes_validate_rejects_a_broken_manifest() -> None:
    deployment = k8s_resource("Deployment")
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_configmap_holds_a_config_the_gateway_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [name for name in os.environ if name.startswith("GATEWAY_")]:
        monkeypatch.delenv(variable)
    config = tmp_path / "gateway.toml"
    config.write_text(k8s_resource("ConfigMap")["data"]["gateway.toml"])
    settings = load_settings(config)
    assert settings.redis_url and settings.namespaces


def test_deployment_shutdown_fits_in_the_grace_period() -> None:
    pod = k8s_resource("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    config = tomllib.loads(k8s_resource("ConfigMap")["data"]["gateway.toml"])
    drain = float(config.get("drain_seconds", DEFAULTS.drain_seconds))
    needed = float(pre_stop[1]) + drain + UVICORN_SHUTDOWN_MARGIN
    assert pod["terminationGracePeriodSeconds"] > needed
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_deployment_references_secrets_that_are_not_committed() -> None:
    [container] = k8s_resource("Deployment")["spec"]["template"]["spec"]["containers"]
    from_secrets = {
        variable["name"]
        for variable in container["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert {"GATEWAY_JWT_SECRET", "GATEWAY_API_KEY"} <= from_secrets
    assert all(document["kind"] != "Secret" for _, document in k8s_documents())


def test_the_deployment_serves_internal_endpoints_on_their_own_port() -> None:
    ports = container_ports()
    assert int(container_env("GATEWAY_INTERNAL_PORT")) == ports["internal"] != ports["http"]
    container = gateway_container()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "internal", probe
    annotations = k8s_resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["internal"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_ingress_reaches_only_the_public_port() -> None:
    """Every Ingress backend is a Service port that targets the container's public port;
    the internal port has a Service of its own that no Ingress names."""
    services = k8s_resources("Service")
    ingress_backends = [
        path["backend"]["service"]
        for rule in k8s_resource("Ingress")["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert ingress_backends
    for backend in ingress_backends:
        [port] = [
            port
            for port in services[backend["name"]]["spec"]["ports"]
            if port["name"] == backend["port"]["name"]
        ]
        assert port["targetPort"] == "http"
    [internal] = [
        name
        for name, service in services.items()
        if [port["targetPort"] for port in service["spec"]["ports"]] == ["internal"]
    ]
    assert internal not in {backend["name"] for backend in ingress_backends}
    for service in services.values():
        targets = {port["targetPort"] for port in service["spec"]["ports"]}
        assert targets in ({"http"}, {"internal"}), "a Service mixes public and internal"


def test_the_network_policy_opens_the_public_port_and_guards_the_internal_one() -> None:
    policy = k8s_resource("NetworkPolicy")
    deployment = k8s_resource("Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {
        tuple(port["port"] for port in rule["ports"]): rule for rule in policy["spec"]["ingress"]
    }
    assert set(rules) == {("http",), ("internal",)}
    assert "from" not in rules[("http",)], "clients come through the ingress controller"
    assert rules[("internal",)]["from"], "the internal port needs a list of who may reach it"


def test_ingress_timeouts_exceed_the_ping_interval() -> None:
    annotations = k8s_resource("Ingress")["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = float(annotations[f"nginx.ingress.kubernetes.io/{key}"])
        assert value >= 3 * DEFAULTS.ping_seconds


# Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    result = run(program("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text().replace("USER 10001:10001", "RUN apt-get install curl")
    broken.write_text(text)
    result = run(program("hadolint"), "--no-color", str(broken))
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_dockerfile_pins_its_base_and_runs_the_gateway_as_pid_1_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", text)
    assert base and re.fullmatch(r"python:[\d.]+-slim-\w+@sha256:[0-9a-f]{64}", base[1])
    stages = re.findall(r"(?m)^FROM (\S+)", text)
    assert len(stages) >= 2 and set(stages) == {"${PYTHON_IMAGE}"}
    assert re.search(r"(?m)^USER 10001:10001$", text)
    entrypoint = re.search(r"(?m)^ENTRYPOINT (\[.*\])$", text)
    command = ["gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert entrypoint and yaml.safe_load(entrypoint[1]) == command
    healthcheck = re.search(r"(?ms)^HEALTHCHECK .*?CMD (\[.*?\])$", text)
    assert healthcheck and "/healthz" in healthcheck[1] and "curl" not in text


def test_dockerignore_sends_only_the_package() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().split("\n")
    assert "*" in lines and {"!gateway/", "!pyproject.toml", "!README.md"} <= set(lines)


# nginx and haproxy


def nginx_test(directory: Path, template: str) -> subprocess.CompletedProcess[str]:
    replicas = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]
    config = write_nginx_config(directory, template, "127.0.0.1:8000", replicas)
    return run(program("nginx"), "-t", "-p", str(directory), "-c", str(config), "-e", "stderr")


def test_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    result = nginx_test(tmp_path, nginx.TEMPLATE.read_text())
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


def test_nginx_t_rejects_a_broken_template(tmp_path: Path) -> None:
    broken = nginx.TEMPLATE.read_text().replace("proxy_http_version 1.1;", "proxy_http_versio 1.1;")
    result = nginx_test(tmp_path, broken)
    assert result.returncode != 0 and "proxy_http_versio" in result.stderr


def test_nginx_refuses_the_internal_paths_before_proxying() -> None:
    template = nginx.TEMPLATE.read_text()
    blocks = re.findall(r"location ~ (\S+) \{\s*return 404;\s*\}", template)
    assert len(blocks) == 1
    refused = re.compile(blocks[0])
    for path in INTERNAL_PATHS:
        for variant in (path, path + "/", path + "/anything"):
            assert refused.search(variant), variant
    for public in ("/", "/ws", "/websocket", "/healthz", "/readyz", "/client/gateway.js", "/apis"):
        assert not refused.search(public), public


def test_haproxy_refuses_the_internal_paths_and_checks_the_internal_port() -> None:
    text = HAPROXY_CFG.read_text()
    [pattern] = re.findall(r"acl internal_path path_reg (\S+)", text)
    assert re.search(r"http-request deny deny_status 404 if internal_path", text)
    refused = re.compile(pattern)
    assert all(refused.search(path) for path in INTERNAL_PATHS)
    assert not any(refused.search(path) for path in ("/", "/ws", "/readyz", "/apis"))
    assert re.search(r"default-server check port 9000 ", text)
    assert re.findall(r"server gateway-\d gateway-\d:(\d+)", text) == ["8000"] * 3


def test_nginx_upgrades_websockets_and_outwaits_pings() -> None:
    template = nginx.TEMPLATE.read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in template
    assert "proxy_set_header Connection $connection_upgrade;" in template
    assert "proxy_http_version 1.1;" in template
    assert not re.search(r"(?m)^\s*(ip_hash|hash|sticky)\b", template), "no sticky sessions"
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        match = re.search(rf"{directive} (\S+);", template)
        assert match and seconds(match[1]) >= 3 * DEFAULTS.ping_seconds


def test_nginx_streams_sse_unbuffered_and_outwaits_the_heartbeat() -> None:
    template = nginx.TEMPLATE.read_text()
    match = re.search(r"location = /sse \{(.*?)\n    \}", template, re.S)
    assert match, "a location of its own for /sse"
    block = match[1]
    for directive in ("proxy_buffering off;", "proxy_cache off;", "gzip off;"):
        assert directive in block, directive
    assert "Upgrade" not in block
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        timeout = re.search(rf"{directive} (\S+);", block)
        assert timeout and seconds(timeout[1]) >= 3 * DEFAULTS.ping_seconds


def test_haproxy_gives_sse_the_tunnel_timeouts() -> None:
    text = HAPROXY_CFG.read_text()
    assert re.search(r"acl event_stream path /sse", text)
    match = re.search(r"http-request set-timeout server (\d+)s if event_stream", text)
    assert match and int(match[1]) >= 3 * DEFAULTS.ping_seconds
    client = re.search(r"timeout client (\d+)s", text)
    assert client and int(client[1]) > DEFAULTS.ping_seconds, "the heartbeat keeps it alive"


def haproxy_check(path: Path) -> subprocess.CompletedProcess[str]:
    return run(program("haproxy"), "-c", "-f", str(path))


def test_haproxy_config_passes_haproxy_c() -> None:
    result = haproxy_check(HAPROXY_CFG)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "[WARNING]" in line]
    assert all("could not resolve address" in line for line in warnings), warnings


def test_haproxy_c_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance leastconn", "balance fewest"))
    assert haproxy_check(broken).returncode != 0
