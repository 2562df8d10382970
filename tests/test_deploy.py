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

Beyond that, the files are checked against the rules they must follow: the GitHub App
manifest against GitHub's documented event/permission rules (tables below, with their
sources); the Ingress and the compose nginx route the public paths only (every route of
the real app is classified, each proxy's matching rules modelled); images carry a
version tag; the Deployment drains before SIGTERM within its grace period and has a
PodDisruptionBudget. No Docker or Kubernetes engine runs these files here: this is
parsing and rule checking, not a deployment.
"""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the test extra

from webhook_service import config
from webhook_service.cli import workers as cli_workers
from webhook_service.core import payloads
from webhook_service.github import client as github

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# --- GitHub App rules ------------------------------------------------------------------
#
# Which App permission each webhook event needs. Source: "Webhook events and payloads",
# https://docs.github.com/en/webhooks/webhook-events-and-payloads : each event's section
# says "To subscribe to this event, a GitHub App must have at least read-level access for
# the "<name>" repository permission" and lists "app" under *Availability*. The values
# are the manifest's names for those permissions ("Choosing permissions for a GitHub
# App", https://docs.github.com/en/apps/creating-github-apps/registering-a-github-app/choosing-permissions-for-a-github-app:
# "The permissions that you select determine what the app can do with GitHub's APIs and
# what webhooks the app can subscribe to. You should select the minimum permissions
# required for the app."). GitHub refuses a manifest whose default event has no backing
# permission ("Default events are not supported by permissions: ...", e.g.
# superplanehq/superplane#5235 for check_run without checks). An event not in this table
# fails the test: look its permission up before subscribing to it.
EVENT_PERMISSION: dict[str, str] = {
    # "Pull requests" repository permission:
    "pull_request": "pull_requests",
    "pull_request_review": "pull_requests",
    "pull_request_review_comment": "pull_requests",
    "pull_request_review_thread": "pull_requests",
    # "Checks" (write-level also subscribes the App to check_run/check_suite by itself):
    "check_run": "checks",
    "check_suite": "checks",
    # "Commit statuses":
    "status": "statuses",
    # "Contents":
    "push": "contents",
    "create": "contents",
    "commit_comment": "contents",
    "release": "contents",
    "fork": "contents",
    # "Issues" (issue_comment also fires for comments on pull requests):
    "issues": "issues",
    "issue_comment": "issues",
    # "Metadata":
    "label": "metadata",
    "public": "metadata",
    "repository": "metadata",
    "star": "metadata",
}

# Events GitHub delivers to every App on its own and refuses in default_events. Same
# page: installation and installation_repositories: "All GitHub Apps receive this event
# by default. You cannot manually subscribe to this event."; github_app_authorization:
# "A GitHub App receives this webhook by default and cannot unsubscribe from this
# event." A manifest naming installation/installation_repositories is refused with
# "Default events unsupported: installation and installation_repositories"
# (WeblateOrg/weblate#20301, fixed by removing them in #20302; tuist/tuist#10709).
DELIVERED_TO_EVERY_APP = frozenset(
    {"installation", "installation_repositories", "github_app_authorization"}
)
# Events no manifest permission can back either. installation_target (the account the
# App is installed on was renamed): its section names no permission, only Availability
# "app" (the docs do not say it is automatic). ping: sent once when a hook is created.
# (meta needs the "Meta" *app* permission; it is simply absent from EVENT_PERMISSION.)
NOT_SUBSCRIBABLE = DELIVERED_TO_EVERY_APP | {"installation_target", "ping"}

# The service's GitHub API calls (the paths webhook_service/github/client.py builds, query
# strings dropped, each interpolation as "{}") and the App permission each needs, from
# "Permissions required for GitHub Apps",
# https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps .
# None: no installation permission (App JWT, or any installation token).
API_PERMISSION: dict[str, tuple[str, str] | None] = {
    # GET ...?state=all&head= (the PR creator's lookup): read; POST (create-pr): write.
    "/repos/{}/pulls": ("pull_requests", "write"),
    "/repos/{}/pulls/{}": ("pull_requests", "read"),  # the poller
    # The default branch: a "Metadata" endpoint (GitHub grants metadata read to any App
    # with a repository permission anyway).
    "/repos/{}": ("metadata", "read"),
    # GraphQL search for pull requests (the poller's discovery): results only from
    # repositories the App may read pull requests of.
    "{}/graphql": ("pull_requests", "read"),
    "/installation/repositories": None,  # the installation's own repositories
    "/app/installations": None,  # App JWT
    "/app/installations/{}/access_tokens": None,  # App JWT
    # "{}" is "/app/hook" with the App's JWT (webhook_service/sync/poller.py); a repository
    # hook's deliveries are read with GITHUB_TOKEN, not as the App.
    "{}/deliveries": None,
    "{}/deliveries/{}/attempts": None,
}

# The manifest's parameters, from "Registering a GitHub App from a manifest",
# https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)

# --- Shutdown --------------------------------------------------------------------------
#
# On SIGTERM the service stops accepting, finishes in-flight requests and exits within
# 10 s (docs/operations.md, "SIGTERM"; uvicorn's timeout_graceful_shutdown, checked to
# be under it, plus the poller's bounded stop).
SHUTDOWN_SECONDS = 10

# --- Public paths ----------------------------------------------------------------------
#
# What the Ingress routes, exactly (path, pathType), and the compose nginx likewise.
INGRESS_PATHS = {
    (config.Settings().webhook_path, "Exact"),
    ("/api/", "Prefix"),
    ("/", "Exact"),
    ("/static/", "Prefix"),
    ("/socket.io/", "Prefix"),
}


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
    assert {doc["kind"] for doc in _kubernetes()} >= {
        "Deployment",
        "Service",
        "Ingress",
        "Secret",
        "PodDisruptionBudget",
    }


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
    service = _one("Service")
    for path in _ingress_paths(ingress):
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


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
    assert int(settings["TimeoutStopSec"]) > SHUTDOWN_SECONDS
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"


# --- GitHub App manifest ---------------------------------------------------------------


def _manifest() -> dict[str, Any]:
    (manifest,) = _yaml_documents(DEPLOY / "app.yml")
    assert isinstance(manifest, dict)
    return manifest


def _github_api_paths() -> set[str]:
    """The API paths webhook_service/github/client.py builds: each string literal or f-string
    that starts with "/" (or with an interpolated prefix and "/"), interpolations as
    "{}", query string dropped."""
    tree = ast.parse(inspect.getsource(github))
    inner: set[int] = set()
    texts: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner.update(id(value) for value in node.values)
            texts.append(
                "".join(
                    str(value.value) if isinstance(value, ast.Constant) else "{}"
                    for value in node.values
                )
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner:
            texts.append(node.value)
    return {
        text.partition("?")[0]
        for text in texts
        if re.fullmatch(r"(\{\})?/[A-Za-z0-9_{}/?=&.-]*", text)
    }


def test_github_api_calls_are_all_classified() -> None:
    """Every API path the client builds has its permission in API_PERMISSION, and vice
    versa: a new call must be looked up before the manifest can be called minimal."""
    found = _github_api_paths()
    assert "/repos/{}/pulls" in found  # sanity: the scan sees the client's calls
    assert found == set(API_PERMISSION), (
        f"unclassified: {sorted(found - set(API_PERMISSION))}, "
        f"gone: {sorted(set(API_PERMISSION) - found)}"
    )


def test_github_app_manifest_events() -> None:
    events = _manifest()["default_events"]
    permissions = _manifest()["default_permissions"]
    assert isinstance(events, list) and len(events) == len(set(events)), events
    automatic = sorted(set(events) & NOT_SUBSCRIBABLE)
    assert not automatic, f"GitHub refuses these as default events: {automatic}"
    unknown = sorted(set(events) - set(EVENT_PERMISSION))
    assert not unknown, f"look up the permission these events need: {unknown}"
    unbacked = {
        event: EVENT_PERMISSION[event]
        for event in events
        if permissions.get(EVENT_PERMISSION[event]) not in ("read", "write")
    }
    assert not unbacked, f"events without the permission GitHub requires: {unbacked}"
    # The events the service turns into PR state must be subscribed to; the
    # installation events it handles come without a subscription.
    assert set(events) >= payloads.PR_EVENTS
    assert payloads.INSTALLATION_EVENTS <= DELIVERED_TO_EVERY_APP


def test_github_app_manifest_permissions_are_minimal() -> None:
    """Exactly what the subscribed events and the API calls need, at the lowest level."""
    manifest = _manifest()
    levels = {"read": 1, "write": 2}
    needed: dict[str, str] = {}

    def need(permission: str, level: str) -> None:
        if levels[level] > levels.get(needed.get(permission, ""), 0):
            needed[permission] = level

    for event in manifest["default_events"]:
        need(EVENT_PERMISSION[event], "read")
    for requirement in API_PERMISSION.values():
        if requirement is not None:
            need(*requirement)
    assert manifest["default_permissions"] == needed
    assert needed == {"pull_requests": "write", "metadata": "read"}


def test_github_app_manifest_fields() -> None:
    manifest = _manifest()
    assert set(manifest) <= MANIFEST_KEYS, sorted(set(manifest) - MANIFEST_KEYS)
    assert manifest["public"] is False
    hook = manifest["hook_attributes"]
    assert hook["url"].startswith("https://")
    assert hook["url"].endswith(config.Settings().webhook_path)
    assert hook.get("active", True) is True
    for key in ("url", "redirect_url"):  # url is required; redirect_url gets the code
        assert str(manifest[key]).startswith("https://"), key


# --- What is public --------------------------------------------------------------------


def _ingress_paths(ingress: dict[str, Any]) -> list[dict[str, Any]]:
    return [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]


def _ingress_routes(ingress: dict[str, Any], request_path: str) -> bool:
    """Whether an Ingress path matches (networking.k8s.io/v1 semantics: Exact is the
    whole path; Prefix matches element by element, split on "/", a trailing "/" of
    either side ignored)."""
    for path in _ingress_paths(ingress):
        kind, value = path["pathType"], path["path"]
        if kind == "Exact":
            if request_path == value:
                return True
            continue
        assert kind == "Prefix", f"pathType {kind} is not modelled here: use Exact or Prefix"
        prefix = [part for part in value.split("/") if part]
        parts = [part for part in request_path.split("/") if part]
        if parts[: len(prefix)] == prefix:
            return True
    return False


def _nginx_locations(text: str) -> list[tuple[str, str, str]]:
    """(modifier, path, body) of each location in nginx.conf (comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    found = re.findall(r"\blocation\s+(=|\^~)?\s*(\S+)\s*\{([^{}]*)\}", text)
    assert len(found) == len(re.findall(r"\blocation\b", text)), (
        "a location with a regex or a nested block: not modelled by this test"
    )
    return [(str(mod), str(path), str(body)) for mod, path, body in found]


def _nginx_proxies(locations: list[tuple[str, str, str]], request_path: str) -> bool:
    """Whether nginx would proxy the path: an exact (=) match wins, else the longest
    matching prefix (no regex locations exist, see _nginx_locations)."""
    exact = [body for mod, path, body in locations if mod == "=" and path == request_path]
    if exact:
        chosen = exact[0]
    else:
        prefixes = [
            (len(path), body)
            for mod, path, body in locations
            if mod != "=" and request_path.startswith(path)
        ]
        if not prefixes:
            return False
        chosen = max(prefixes)[1]
    return "proxy_pass" in chosen


def _app_paths(tmp_path: Path) -> dict[str, bool]:
    """A sample request path for every route of the real app, and whether it must be
    public (webhook, API, dashboard page and files, Socket.IO)."""
    from starlette.routing import Mount, Route

    from webhook_service.app import create_app

    settings = config.Settings(
        webhook_secrets=(config.Secret("x"),),
        api_token=config.Secret("y"),
        database_url=config.Secret(f"sqlite:///{tmp_path / 'routes.db'}"),
    )
    asgi = create_app(settings)  # routes only: nothing connects before the lifespan
    paths: dict[str, bool] = {str(asgi.engineio_path): True}  # Socket.IO
    for route in asgi.other_asgi_app.routes:
        if isinstance(route, Mount):
            sample = f"{route.path}/dashboard.js"
        else:
            assert isinstance(route, Route), route
            sample = re.sub(r"\{[^}]+\}", "1", route.path)
        paths[sample] = (
            sample == settings.webhook_path
            or sample.startswith(("/api/", "/static/"))
            or sample == "/"
        )
    private = {path for path, public in paths.items() if not public}
    assert {"/metrics", "/stats", "/health", "/healthz", "/readyz"} <= private
    return paths


def test_ingress_routes_only_the_public_paths(tmp_path: Path) -> None:
    ingress = _one("Ingress")
    declared = {(path["path"], path["pathType"]) for path in _ingress_paths(ingress)}
    assert declared == INGRESS_PATHS
    assert ("/", "Prefix") not in declared
    assert all(rule.get("host") for rule in ingress["spec"]["rules"])  # no catch-all host
    assert "defaultBackend" not in ingress["spec"]
    expected = _app_paths(tmp_path)
    assert {path: _ingress_routes(ingress, path) for path in expected} == expected
    for private in ("/metrics/", "/healthz/x", "/index.html", "/webhooks/github/x"):
        assert not _ingress_routes(ingress, private), private


def test_nginx_proxies_only_the_public_paths(tmp_path: Path) -> None:
    locations = _nginx_locations((DEPLOY / "nginx.conf").read_text())
    expected = _app_paths(tmp_path)
    assert {path: _nginx_proxies(locations, path) for path in expected} == expected
    for private in ("/metrics/", "/healthz/x", "/index.html", "/webhooks/github/x"):
        assert not _nginx_proxies(locations, private), private
    # The same paths as the Ingress.
    assert {
        (path, "Exact" if mod == "=" else "Prefix")
        for mod, path, body in locations
        if "proxy_pass" in body
    } == INGRESS_PATHS


def _host_ip(port: Any) -> str | None:
    """The host address a compose ``ports`` entry binds (None: every interface). Every
    entry publishes: without a host port Docker picks a random one."""
    if isinstance(port, dict):  # long syntax
        return str(port["host_ip"]) if "host_ip" in port else None
    parts = str(port).rsplit(":", 2)  # "[IP:]HOST:CONTAINER" or "CONTAINER"
    return parts[0].strip("[]") if len(parts) == 3 else None


def test_compose_publishes_only_the_proxy() -> None:
    services = _compose()["services"]
    proxies = {
        name
        for name, service in services.items()
        if "./nginx.conf:/etc/nginx/nginx.conf:ro" in service.get("volumes", [])
    }
    assert proxies == {"nginx"}
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        if name not in proxies:
            for port in service.get("ports", []):
                assert _host_ip(port) in ("127.0.0.1", "::1"), f"{name} publishes {port!r}"
    # The replicas may at most be bound to the loopback (above); the databases not at all.
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), f"{name} must not be published"
    assert services["nginx"]["ports"], "nginx is the way in"


# --- Images ----------------------------------------------------------------------------


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        return str(tomllib.load(stream)["project"]["version"])


def _images() -> dict[str, str]:
    """Every image reference in deploy/ (Dockerfile FROM, compose, Kubernetes), by where."""
    images: dict[str, str] = {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.split(None, 1)[:1] == ["FROM"]:
            images["Dockerfile FROM"] = line.split()[1]
    for name, service in _compose()["services"].items():
        images[f"compose {name}"] = str(service["image"])
    for doc in _kubernetes():
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                images[f"kubernetes {container['name']}"] = str(container["image"])
    return images


def _tag(image: str) -> str | None:
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


def test_images_are_versioned() -> None:
    images = _images()
    assert {"Dockerfile FROM", "compose nginx", "kubernetes webhook-service"} <= set(images)
    for where, image in images.items():
        assert _tag(image) not in (None, "latest"), f"{where}: {image} has no version tag"
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert not re.search(r":latest\b", path.read_text()), path
    # The service's own image carries the package's version.
    version = _project_version()
    own = [image for where, image in images.items() if "webhook-service" in image]
    assert own and all(_tag(image) == version for image in own), own
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"


# --- Kubernetes: disruption and shutdown ---------------------------------------------


def test_kubernetes_pod_disruption_budget() -> None:
    deployment = _one("Deployment")
    budget = _one("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    limits = {key for key in ("minAvailable", "maxUnavailable") if key in budget["spec"]}
    assert len(limits) == 1, limits
    (limit,) = limits
    value = budget["spec"][limit]
    assert isinstance(value, int)
    replicas = deployment["spec"]["replicas"]
    # At least one pod stays up, and a drain can still evict one.
    assert 1 <= value < replicas


def _prestop_seconds(container: dict[str, Any]) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:  # the sleep action (beta since Kubernetes 1.30)
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert len(command) == 2 and command[0] in ("sleep", "/bin/sleep"), command
    return int(command[1])


def test_kubernetes_drains_before_sigterm() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pause = _prestop_seconds(container)
    assert pause >= 1
    # The exec preStop needs a sleep binary: the Debian-based python slim image has one.
    assert _images()["Dockerfile FROM"].startswith("python:3.11-slim")
    # The grace period counts from the start of preStop: sleep, then the drain.
    assert spec["terminationGracePeriodSeconds"] > pause + SHUTDOWN_SECONDS
    assert cli_workers.DRAIN_SECONDS < SHUTDOWN_SECONDS  # uvicorn's, one worker or many


def test_kubernetes_probes_and_scraping_stay_in_the_cluster() -> None:
    template = _one("Deployment")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
