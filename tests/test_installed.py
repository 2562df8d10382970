"""The package as a user installs it: a wheel, runtime dependencies only, a fresh venv.

Everything else in the suite runs in the development venv, which has the test extras;
a module that imports one of them (``replay`` once imported httpx) passes there and
crashes for every user. Here the wheel is built as a user builds it (``pip wheel``,
build isolation), installed with ``pip install`` into a new venv, and used from that
venv alone: every module is imported (found by walking the package), the package data
is looked for in the installed tree, the declared dependencies are compared with what
the code imports, and every CLI subcommand runs for real against a live ``serve`` and
the shipped fake GitHub, each checked for its documented output. ``pipx install`` of
the source tree is tested too.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess
from webhook_service.ingest.fixtures import load_delivery

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webhook_service"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SECRET = "installed-secret"
TOKEN = "installed-api-token"
GITHUB_TOKEN = "installed-github-token"
REPO = "octo/demo"

#: Files a user's install must have (paths inside the package).
PACKAGE_DATA = [
    "py.typed",
    "ops/static/index.html",
    "ops/static/dashboard.js",
    "ops/static/dashboard.css",
    "ops/static/console.css",
    "ops/static/js/api.js",
    "ops/static/js/charts.js",
    "ops/static/js/deliveries.js",
    "ops/static/js/delivery.js",
    "ops/static/js/dom.js",
    "ops/static/js/filter.js",
    "ops/static/js/health.js",
    "ops/static/js/json_view.js",
    "ops/static/js/lists.js",
    "ops/static/js/pulls.js",
    "ops/static/js/router.js",
    "ops/static/js/state.js",
    "ops/static/js/stream.js",
    "ops/static/js/tasks.js",
    "ops/static/js/timeline.js",
    "ops/static/vendor/socket.io/socket.io.min.js",
    "ops/static/vendor/socket.io/LICENSE",
    "testing/rest/pulls-get.json",
    "testing/rest/pulls-list.json",
    "testing/rest/app-hook-deliveries-list.json",
    "testing/rest/repo-hook-deliveries-list.json",
    "testing/rest/hook-delivery-get.json",
]

#: Declared runtime dependencies that no module imports by name, and why they are there.
NOT_IMPORTED = {
    "aiosqlite": "databases loads it for sqlite:// URLs",
    "sqlalchemy": "databases builds its queries with it; pinned to the releases it works with",
    "redis": "python-socketio's AsyncRedisManager imports it; without it emits are dropped",
}


def _sh(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of the development venv: no PYTHONPATH, no
    VIRTUAL_ENV, a PATH without .venv/bin."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    home: Path
    source: Path  # the checkout the wheel was built from

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "webhook-service"

    def python_run(self, code: str) -> str:
        # -I: isolated (no PYTHONPATH, no user site, not the cwd on sys.path), from a
        # directory without the source tree, so only the installed package is found.
        return _sh(self.python, "-I", "-c", code, env=_clean_env(self.home), cwd=self.home).stdout


def _checkout(target: Path) -> Path:
    listed = _sh("git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                 "--exclude-standard").stdout
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file():  # a tracked file deleted in the working tree is not
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    home = base / "home"
    home.mkdir()
    dist = base / "dist"
    # What a user runs: pip wheel with build isolation (setuptools from the index), on
    # the files of a checkout (tracked or new, not ignored): a file that exists only in
    # this working tree is not in a user's clone, and the build leaves build/ behind.
    source = _checkout(base / "source")
    _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
        "--disable-pip-version-check", "-w", dist, source)
    (wheel,) = dist.glob("webhook_service-*.whl")
    venv = base / "venv"
    _sh(sys.executable, "-m", "venv", venv)  # a new venv from the base interpreter
    _sh(venv / "bin" / "python", "-m", "pip", "install", "--quiet",
        "--disable-pip-version-check", wheel, env=_clean_env(home))
    yield Installed(venv, wheel, home, source)


def test_the_wheel_is_versioned_and_installs_the_command(installed: Installed) -> None:
    assert installed.wheel.name == f"webhook_service-{VERSION}-py3-none-any.whl"
    out = _sh(installed.command, "--version", env=_clean_env(installed.home)).stdout
    assert out.strip() == f"webhook-service {VERSION}"
    files = installed.python_run(
        "import importlib.metadata as m\n"
        "print('\\n'.join(str(f) for f in m.files('webhook-service') or []))"
    ).split()
    assert any(f.endswith(".dist-info/licenses/LICENSE") or f.endswith(".dist-info/LICENSE")
               for f in files), files
    module = _sh(installed.python, "-I", "-m", "webhook_service", "--version",
                 env=_clean_env(installed.home), cwd=installed.home).stdout
    assert module.strip() == f"webhook-service {VERSION}"


def test_only_runtime_dependencies_are_installed(installed: Installed) -> None:
    """The venv really is a user's: none of the test extras came along."""
    names = installed.python_run(
        "import importlib.metadata as m\n"
        "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
    ).split()
    for test_only in ("httpx", "pytest", "hypothesis", "playwright", "psutil", "mypy"):
        assert test_only not in names


def test_every_module_imports_from_the_installed_package(installed: Installed) -> None:
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py"
    }
    found = {name.removesuffix(".__init__") for name in found}
    code = """
import importlib, json, pkgutil, sys
import webhook_service
names = ["webhook_service"] + [
    m.name for m in pkgutil.walk_packages(webhook_service.__path__, "webhook_service.")
    if not m.name.endswith("__main__")  # running it is what the CLI tests do
]
failed = {}
files = {}
for name in names:
    try:
        files[name] = importlib.import_module(name).__file__
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"names": names, "failed": failed, "files": files}))
"""
    report = json.loads(installed.python_run(code))
    assert report["failed"] == {}
    # Walking the installed package finds every module of the source tree...
    assert set(report["names"]) == found
    # ...and each came from the venv, not from the source tree.
    site = str(installed.venv)
    assert all(str(path).startswith(site) for path in report["files"].values())


def test_the_package_data_is_in_the_installed_tree(installed: Installed) -> None:
    code = (
        "import importlib.resources as r, json, sys\n"
        "root = r.files('webhook_service')\n"
        f"paths = {PACKAGE_DATA!r}\n"
        "print(json.dumps({p: root.joinpath(p).is_file() and len(root.joinpath(p).read_bytes())"
        " for p in paths}))"
    )
    sizes = json.loads(installed.python_run(code))  # False: missing; else its size
    assert {path for path, size in sizes.items() if size is False} == set()
    assert {path for path, size in sizes.items() if not size} == {"py.typed"}  # a marker
    # The fake GitHub renders its answers from those JSON files.
    rest = json.loads(installed.python_run(
        "import json; from webhook_service.testing import fake_github as f\n"
        "print(json.dumps(sorted(p.name for p in f.rest_fixtures_root().glob('*.json'))))"
    ))
    assert "pulls-list.json" in rest


def _imports(package: Path) -> set[str]:
    """Top-level names of the third-party modules the package imports."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "webhook_service"}


def test_declared_dependencies_are_exactly_what_the_code_imports(installed: Installed) -> None:
    report = json.loads(installed.python_run(
        "import importlib.metadata as m, json, re\n"
        "requires = [r for r in m.requires('webhook-service') or [] if 'extra ==' not in r]\n"
        "declared = sorted({re.split(r'[\\s\\[<>=!~;]', r, maxsplit=1)[0].lower()"
        " for r in requires})\n"
        "print(json.dumps({'declared': declared,"
        " 'owners': {k: [d.lower() for d in v] for k, v in m.packages_distributions().items()}}))"
    ))
    declared = {name.replace("_", "-") for name in report["declared"]}
    owners: dict[str, list[str]] = report["owners"]
    imported = _imports(PACKAGE)
    distributions: dict[str, str] = {}
    for module in imported:
        assert module in owners, f"{module} is imported but no installed distribution has it"
        distributions[module] = owners[module][0].replace("_", "-")
    undeclared = {m: d for m, d in distributions.items() if d not in declared}
    assert undeclared == {}, "imported but not declared in [project.dependencies]"
    unused = declared - set(distributions.values()) - set(NOT_IMPORTED)
    assert unused == set(), "declared in [project.dependencies] but never imported"


# -- every subcommand, for real --------------------------------------------------------


@dataclass
class Cli:
    installed: Installed
    env: dict[str, str]
    cwd: Path

    async def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(
            subprocess.run, [str(self.installed.command), *args], env=self.env, cwd=self.cwd,
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == code, (
            f"webhook-service {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result


def _request(method: str, url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback http)
        url, data=data, method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback http)
        return bytes(response.read())


def _fixture_bodies(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*.json") if p.with_suffix(".headers").exists()]


@pytest.fixture
def fake_github(installed: Installed) -> Iterator[str]:
    """The shipped fake GitHub, run from the installed venv."""
    # The repositories of the shipped fixtures too: replaying them tracks those.
    named = {
        match[1]
        for body in _fixture_bodies(ROOT / "fixtures" / "deliveries")
        for match in re.finditer(r'"full_name": "([^"]+/[^"]+)"', body.read_text())
    }
    repositories = [arg for name in sorted(named - {REPO}) for arg in ("--repository", name)]
    process = subprocess.Popen(
        [str(installed.python), "-I", "-m", "webhook_service.testing", "--token", GITHUB_TOKEN,
         "--repository", REPO, "--pulls", "2", *repositories],
        env=_clean_env(installed.home), cwd=installed.home, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        yield url
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


async def test_every_subcommand_runs_from_the_installed_venv(
    installed: Installed, fake_github: str, database_url: str, tmp_path: Path
) -> None:
    env = _clean_env(
        installed.home,
        DATABASE_URL=database_url,
        WEBHOOK_SECRET=SECRET,
        API_TOKEN=TOKEN,
        GITHUB_TOKEN=GITHUB_TOKEN,
        GITHUB_API_URL=fake_github,
        GITHUB_REPOSITORIES=REPO,
        SYNC_INTERVAL="3600",  # serve's poller sweeps once; `sync --once` runs the next
        WORKTREE_ROOT=str(tmp_path / "worktrees"),
    )
    cli = Cli(installed, env, tmp_path)

    migrated = await cli("migrate")
    assert re.fullmatch(r"applied \d+ migration\(s\); schema version (\d+)\n", migrated.stdout)
    again = await cli("migrate")
    assert re.fullmatch(r"applied 0 migration\(s\); schema version \d+\n", again.stdout)

    server = ServerProcess(
        env, tmp_path / "serve.log", command=[str(installed.command), "serve"],
        inherit_env=False, cwd=tmp_path,
    )
    await asyncio.to_thread(server.start)
    try:
        await _against_a_live_server(cli, server.url, tmp_path)
    finally:
        await asyncio.to_thread(server.stop)
    assert server.process is not None and server.process.returncode == 0, server.log_tail()


async def _against_a_live_server(cli: Cli, url: str, tmp_path: Path) -> None:
    # The dashboard and its vendored client are served from the installed tree.
    page = await asyncio.to_thread(_get, f"{url}/")
    assert b"/static/vendor/socket.io/socket.io.min.js" in page
    vendored = await asyncio.to_thread(_get, f"{url}/static/vendor/socket.io/socket.io.min.js")
    assert len(vendored) > 10_000

    stats = await cli("stats", "--url", url)
    assert re.search(r"^running\s+True$", stats.stdout, re.M), stats.stdout
    as_json = json.loads((await cli("stats", "--url", url, "--json")).stdout)
    assert as_json["running"] is True and "monitor" in as_json

    fixtures = ROOT / "fixtures" / "deliveries"
    sent = len(_fixture_bodies(fixtures))
    replayed = await cli("replay", str(fixtures), "--url", f"{url}/webhooks/github")
    summary = replayed.stdout.splitlines()[0]
    match = re.fullmatch(
        r"sent (\d+), applied (\d+), duplicate 0, ignored (\d+), rejected 0, bad fixtures 0",
        summary,
    )
    assert match and int(match[1]) == sent, replayed.stdout
    assert int(match[2]) > 0 and int(match[3]) > 0  # pull requests applied, the rest ignored

    task_id = str(uuid.uuid4())
    await asyncio.to_thread(_request, "POST", f"{url}/api/tasks", {
        "id": task_id, "title": "Ship it", "repository": REPO, "branch": f"task/{task_id}",
    })
    tasks = await cli("tasks")
    header, *rows = tasks.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "TITLE", "REPOSITORY", "BRANCH", "UPDATED_AT"]
    assert any(row.startswith(task_id) and "TODO" in row for row in rows), tasks.stdout

    tracked = json.loads((await cli("track", f"{REPO}#2", "--json")).stdout)
    assert (tracked["repository"], tracked["number"], tracked["status"]) == (REPO, 2, "OPEN")
    linked = await cli("track", f"{REPO}#1", "--task", task_id)
    assert re.search(rf"^{REPO}\s+1\s+OPEN\s+False\s+.*{task_id}$", linked.stdout, re.M), (
        linked.stdout
    )

    second = str(uuid.uuid4())
    await asyncio.to_thread(_request, "POST", f"{url}/api/tasks", {
        "id": second, "title": "Open my PR", "repository": REPO, "branch": f"task/{second}",
    })
    created = json.loads((await cli("create-pr", second, "--json")).stdout)
    assert created["created"] is True and created["pull_request"]["task_id"] == second
    number = created["pull_request"]["number"]
    relinked = await cli("create-pr", second)  # idempotent: links the open one
    assert re.search(rf"^False\s+{REPO}\s+{number}\s+OPEN\s", relinked.stdout, re.M), (
        relinked.stdout
    )

    out = tmp_path / "recorded"
    recorded = await cli("record", "--out", str(out))
    paths = [Path(line) for line in recorded.stdout.splitlines()]
    assert paths and all(p.is_file() and p.with_suffix(".headers").is_file() for p in paths)
    assert recorded.stderr.strip().endswith(f"recorded {len(paths)} deliveries in {out}")
    assert len(paths) == sent

    offline = await cli("replay", str(out), "--offline", "--new-guid")
    assert re.fullmatch(
        rf"sent {sent}, applied \d+, duplicate 0, ignored \d+, rejected 0, bad fixtures 0",
        offline.stdout.splitlines()[0],
    ), offline.stdout

    guid = next(load_delivery(p).guid for p in paths if p.parent.name == "pull_request")
    redelivered = await cli("redeliver", guid)
    header, row = redelivered.stdout.splitlines()
    assert header.split() == ["GUID", "OUTCOME", "EVENTS"]
    assert row.split()[0] == guid and row.split()[1] in {"unchanged", "stale", "terminal"}

    synced = json.loads((await cli("sync", "--once")).stdout)
    assert synced["error_count"] == 0 and synced["sync_count"] == 1
    assert synced["api_calls"] >= 1


# -- pipx ------------------------------------------------------------------------------


def test_pipx_install_gives_a_working_command(installed: Installed, tmp_path: Path) -> None:
    pipx = shutil.which("pipx", path=str(Path(sys.executable).parent))
    assert pipx is not None, "pipx is a test dependency (pyproject.toml [test])"
    env = _clean_env(
        tmp_path,
        PIPX_HOME=str(tmp_path / "pipx"),
        PIPX_BIN_DIR=str(tmp_path / "bin"),
        PIPX_MAN_DIR=str(tmp_path / "man"),
        PIPX_DEFAULT_PYTHON=sys.executable,
    )
    _sh(pipx, "install", "--quiet", installed.source, env=env, cwd=tmp_path)
    command = tmp_path / "bin" / "webhook-service"
    assert _sh(command, "--version", env=env).stdout.strip() == f"webhook-service {VERSION}"
    database = tmp_path / "pipx.db"
    migrated = _sh(command, "migrate", env={**env, "DATABASE_URL": f"sqlite:///{database}",
                                            "DEV_MODE": "true"}, cwd=tmp_path)
    assert migrated.stdout.startswith("applied ") and database.exists()
    assert os.access(command, os.X_OK)


# -- the README's quick start, as written ----------------------------------------------


def _readme_block(after: str) -> str:
    """The first ``sh`` code block of the README after the line ``after``."""
    text = (ROOT / "README.md").read_text()
    start = text.index("\n", text.index("```sh\n", text.index(f"\n{after}\n"))) + 1
    return text[start : text.index("```", start)]


async def test_the_readme_quick_start_runs_as_written(
    installed: Installed, tmp_path: Path
) -> None:
    """In a copy of the checkout: the one command that installs and serves, then the
    try-out with the shipped fixtures, each as the README writes it (the port aside:
    PORT picks a free one, as a user whose 3000 is taken would)."""
    serve_command = _readme_block("## Quick start")
    try_out = _readme_block("`Codertocat/Hello-World#2`):")
    assert serve_command.strip().endswith("scripts/serve")
    checkout = tmp_path / "clone"
    shutil.copytree(installed.source, checkout)
    server = ServerProcess(
        _clean_env(tmp_path), tmp_path / "quick-start.log",
        command=["bash", "-c", serve_command.strip()], inherit_env=False,
        cwd=checkout,
    )
    await asyncio.to_thread(server.start, 240.0)  # the first run installs .venv
    try:
        # The quick start's venv is what a user installs: no test extras in it.
        assert not list((checkout / ".venv").glob("lib/python*/site-packages/httpx"))
        env = _clean_env(tmp_path, PORT=str(server.port))
        result = await asyncio.to_thread(
            subprocess.run, ["bash", "-e", "-c", try_out], env=env, cwd=checkout,
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        sent = len(_fixture_bodies(checkout / "fixtures" / "deliveries"))
        assert f"sent {sent}, applied " in result.stdout
        assert "rejected 0, bad fixtures 0" in result.stdout
        assert re.search(rf"^monitor\.deliveries_received\s+{sent}$", result.stdout, re.M), (
            result.stdout
        )
        page = await asyncio.to_thread(_get, f"{server.url}/")  # the dashboard URL
        assert b"socket.io" in page
    finally:
        await asyncio.to_thread(server.stop)


async def test_setup_runs_from_the_installed_venv(
    installed: Installed, fake_github: str, tmp_path: Path
) -> None:
    """`webhook-service setup` from the installed venv against the installed fake: the
    page, GitHub's side of the manifest flow, the callback, .env written."""
    from tests.github.test_setup import register, served
    from tests.servers import free_port

    port = free_port()
    env = _clean_env(
        installed.home,
        GHE_HOST=fake_github.removeprefix("http://"),
        GHE_PROTOCOL="http",
        GITHUB_API_URL=fake_github,
    )
    process = await asyncio.create_subprocess_exec(
        str(installed.command), "setup", "--port", str(port), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            await served(client, f"http://127.0.0.1:{port}/setup")
            done = await register(client, f"http://127.0.0.1:{port}/setup")
            assert done.status_code == 200, done.text
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert "Install it: " in out.decode()
    written = (tmp_path / ".env").read_text()
    assert re.search(r"^APP_ID=\d+$", written, re.M), written
    assert (tmp_path / "webhook-service.private-key.pem").stat().st_mode & 0o077 == 0
