"""deploy/: every file parses, and every environment variable it sets is one the service reads.

The set of known names is derived from the code, not copied: ``load_settings`` copies
``environ`` into a plain dict and hands it to ``config._Reader``, whose every accessor
goes through ``self._values.get(key, ...)``. The test swaps in a ``_Reader`` subclass
that wraps those values in a Mapping recording each ``.get()`` key, and calls
``load_settings({}, env_file=None)``. With an empty environment every setting falls back
to its default, and each one is read unconditionally, so the recorded keys are exactly
the variables the service knows (``PRIVATE_KEY_PATH`` included).

Variables set for *other* images (``POSTGRES_*`` for the postgres container) are not the
service's and are checked separately.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the test extra

from webhook_service import config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

REQUIRED_EVENTS = {
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "installation",
    "installation_repositories",
}
REQUIRED_PERMISSIONS = {"pull_requests": "write", "contents": "read", "metadata": "read"}


class _RecordingMapping(Mapping[str, str]):
    """A read-only mapping that remembers every key looked up through ``get``."""

    def __init__(self, values: Mapping[str, str], seen: set[str]) -> None:
        self._values = values
        self._seen = seen

    def __getitem__(self, key: str) -> str:
        self._seen.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@pytest.fixture(scope="module")
def known_names() -> frozenset[str]:
    seen: set[str] = set()

    class RecordingReader(config._Reader):
        def __init__(self, values: Mapping[str, str]) -> None:
            super().__init__(_RecordingMapping(values, seen))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "_Reader", RecordingReader)
        config.load_settings({}, env_file=None)
    # Sanity: the recorder really saw the service's settings.
    assert {"WEBHOOK_SECRET", "API_TOKEN", "DATABASE_URL", "SOCKETIO_MESSAGE_QUEUE"} <= seen
    return frozenset(seen)


def _yaml_documents(path: Path) -> list[Any]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _env_names(environment: Any) -> set[str]:
    """Names from a compose ``environment:`` (mapping or ``KEY=value`` list)."""
    if environment is None:
        return set()
    if isinstance(environment, dict):
        return {str(key) for key in environment}
    assert isinstance(environment, list), environment
    return {str(item).partition("=")[0] for item in environment}


def _dockerfile_env(text: str) -> set[str]:
    """Names set by ``ENV`` (``ENV A=1 B=2`` and the legacy ``ENV A 1``), continuations joined."""
    names: set[str] = set()
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        match = re.match(r"\s*ENV\s+(.*)", line, flags=re.IGNORECASE)
        if not match:
            continue
        rest = match.group(1).strip()
        pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest)
        names.update(pairs if pairs else [rest.split()[0]])
    return names


def _systemd_env(text: str) -> set[str]:
    names: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "Environment":
            for assignment in value.split():
                names.add(assignment.strip("\"'").partition("=")[0])
    return names


def _compose() -> dict[str, Any]:
    (doc,) = _yaml_documents(DEPLOY / "docker-compose.yml")
    assert isinstance(doc, dict)
    return doc


def _kubernetes() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.y*ml")):
        for doc in _yaml_documents(path):
            assert isinstance(doc, dict) and "kind" in doc, path
            docs.append(doc)
    return docs


def _one(kind: str) -> dict[str, Any]:
    matches = [doc for doc in _kubernetes() if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def _app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services built from deploy/Dockerfile: the service's own containers."""
    return {
        name: service
        for name, service in compose["services"].items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def _all_set_names() -> dict[str, set[str]]:
    """Every environment variable each deploy/ file sets for the service, by file."""
    found: dict[str, set[str]] = {}
    found["Dockerfile"] = _dockerfile_env((DEPLOY / "Dockerfile").read_text())
    found["webhook-service.service"] = _systemd_env(
        (DEPLOY / "webhook-service.service").read_text()
    )
    found["docker-compose.yml"] = set().union(
        *(_env_names(s.get("environment")) for s in _app_services(_compose()).values())
    )
    k8s: set[str] = set()
    for doc in _kubernetes():
        if doc["kind"] == "Secret":
            k8s |= set(doc.get("stringData") or {}) | set(doc.get("data") or {})
        elif doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                k8s |= {env["name"] for env in container.get("env", [])}
    found["kubernetes/"] = k8s
    return found


def test_every_deploy_file_parses() -> None:
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {
        "Dockerfile",
        "docker-compose.yml",
        "nginx.conf",
        "webhook-service.service",
        "app.yml",
        "README.md",
    } <= names
    for path in files:
        text = path.read_text()
        assert text.strip(), path
        if path.suffix in (".yml", ".yaml"):
            assert _yaml_documents(path), path
    assert {doc["kind"] for doc in _kubernetes()} >= {"Deployment", "Service", "Ingress", "Secret"}


def test_every_environment_variable_is_known(known_names: frozenset[str]) -> None:
    found = _all_set_names()
    assert all(found.values()), found  # each parser found something
    unknown = {f: sorted(names - known_names) for f, names in found.items() if names - known_names}
    assert not unknown, f"environment variables the service does not read: {unknown}"


def test_dockerfile_non_root_with_healthcheck() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    users = [
        rest.strip() for word, *rest_list in instructions if word == "USER" for rest in rest_list
    ]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(word == "HEALTHCHECK" for word, *_ in instructions)
    assert "/healthz" in (DEPLOY / "Dockerfile").read_text()
    assert any(word == "EXPOSE" and rest == ["3000"] for word, *rest in instructions)
    assert _dockerfile_env((DEPLOY / "Dockerfile").read_text()) >= {"HOST", "PORT"}


def test_compose_services() -> None:
    compose = _compose()
    services = compose["services"]
    apps = _app_services(compose)
    assert len(apps) == 2, sorted(apps)
    assert {"nginx", "postgres", "redis"} <= set(services)
    assert str(services["postgres"]["image"]).startswith("postgres:16")
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])
    assert str(services["redis"]["image"]).startswith("redis:7")
    for service in apps.values():
        env = service["environment"]
        assert str(env["DATABASE_URL"]).startswith("postgresql://")
        assert str(env["SOCKETIO_MESSAGE_QUEUE"]).startswith("redis://")
        assert str(env["WEBHOOK_SECRET"]).startswith("${WEBHOOK_SECRET:?")
        assert str(env["API_TOKEN"]).startswith("${API_TOKEN:?")
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_nginx_sticky_and_websocket_upgrade() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"^\s*ip_hash;", text, flags=re.MULTILINE)
    assert "location /socket.io/" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert re.search(r"proxy_set_header Connection \$\w+;", text)
    assert "proxy_http_version 1.1;" in text
    upstream_servers = re.findall(r"^\s*server (app\d):3000;", text, flags=re.MULTILINE)
    assert set(upstream_servers) == set(_app_services(_compose()))


def test_kubernetes_deployment_probes_and_secret() -> None:
    deployment = _one("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    secret = _one("Secret")
    from_secret = [
        ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref
    ] + [
        env["valueFrom"]["secretKeyRef"]["name"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    assert secret["metadata"]["name"] in from_secret
    assert {"WEBHOOK_SECRET", "API_TOKEN"} <= set(secret["stringData"])
    service = _one("Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_kubernetes_ingress_affinity() -> None:
    ingress = _one("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == _one("Service")["metadata"]["name"]


def test_systemd_unit() -> None:
    text = (DEPLOY / "webhook-service.service").read_text()
    settings = {
        key.strip(): value.strip()
        for key, sep, value in (line.partition("=") for line in text.splitlines())
        if sep and not key.startswith("#")
    }
    assert settings["ExecStart"] == "/opt/webhook-service/.venv/bin/webhook-service serve"
    assert settings["EnvironmentFile"] == "/etc/webhook-service/env"
    assert settings["User"] == "webhook-service"
    assert settings["Restart"] == "on-failure"
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["TimeoutStopSec"] == "15"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"


def test_github_app_manifest() -> None:
    (manifest,) = _yaml_documents(DEPLOY / "app.yml")
    assert manifest["default_permissions"] == REQUIRED_PERMISSIONS
    assert set(manifest["default_events"]) == REQUIRED_EVENTS
    assert len(manifest["default_events"]) == len(REQUIRED_EVENTS)
    assert manifest["public"] is False
    assert manifest["hook_attributes"]["url"].endswith(config.Settings().webhook_path)
