"""The poller process of ``scripts/bench_poll.py`` (PYTHONPATH: a package root, scripts/):
one sync worker, built as the service does from whichever ``webhook_service`` PYTHONPATH
gives (the checkout's, or the baseline's older layout). Each stdin line is a JSON
operation (the first its config), each stdout line its JSON answer with the peak RSS:
``start``, ``stats``, ``watch`` (changed PRs and the ``updated_at`` awaited, looked for in
the store every 50 ms), ``found``, ``verify`` (stored fields against the fake's), ``quit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

WATCH_EVERY = 0.05  # seconds between store reads for watched PRs


def _load(name: str, *modules: str) -> Any:
    """``name`` from the first of ``modules`` this tree has (layouts differ by version)."""
    for module in modules:
        with contextlib.suppress(ImportError):
            return getattr(importlib.import_module(module), name)
    raise ImportError(f"{name} is in none of {modules}")


def vm_hwm() -> int:
    """This process's peak RSS since exec (VmHWM; ``ru_maxrss`` would count the parent's)."""
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024


def stamp(value: datetime | None) -> str | None:
    value = value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def watch(store: Any, pending: dict[tuple[str, int], str], found: dict[str, float]) -> None:
    """Forever: when each pending PR's stored ``updated_at`` reached the one awaited."""
    from webhook_service.store import UnitOfWork

    while True:
        await asyncio.sleep(WATCH_EVERY)
        if not (keys := list(pending)):
            continue
        async with store.connection() as conn:
            rows = await UnitOfWork(conn).load_pulls(keys)
        now = time.monotonic()
        for key in keys:
            have = stamp(rows[key].github_updated_at) if key in rows else None
            if have is not None and have >= pending[key]:
                del pending[key]
                found[f"{key[0]}#{key[1]}"] = now  # time.monotonic() seen


async def verify(store: Any, expect: list[dict[str, Any]]) -> dict[str, list[str]]:
    """A line per PR whose stored status, title, head, draft or time differ from the fake's."""
    mismatches = []
    for want in expect:
        label = f"{want['repository']}#{want['number']}"
        if (got := await store.get_pull(want["repository"], want["number"])) is None:
            mismatches.append(f"{label}: not in the store")
            continue
        have = {"status": got.status.value, "title": got.title, "head_sha": got.head_sha,
                "draft": got.draft, "updated_at": stamp(got.github_updated_at)}  # fmt: skip
        if differ := [f"{k} {v!r} != {want[k]!r}" for k, v in have.items() if v != want[k]]:
            mismatches.append(f"{label}: {', '.join(differ)}")
    return {"mismatches": mismatches}


async def run(config: Mapping[str, Any], replies: TextIO) -> None:
    """The worker, then the parent's operations answered until "quit" or EOF."""
    import aiohttp

    import webhook_service
    from webhook_service.config import load_settings
    from webhook_service.reconciler import Reconciler
    from webhook_service.store import Store

    environ = {"GITHUB_TOKEN": config["token"], "GITHUB_API_URL": config["api_url"],
               "GITHUB_REPOSITORIES": ",".join(config["repositories"]),
               "DATABASE_URL": config["database_url"]}  # fmt: skip
    settings = load_settings(environ | config["env"], env_file=None)
    await (store := Store(settings.database_url.reveal())).connect()
    await store.migrate()
    reconciler = Reconciler(store, task_branch_pattern=settings.task_branch_pattern,
                            batch_max=settings.ingest_batch_max)  # fmt: skip
    reconciler.start()
    pending: dict[tuple[str, int], str] = {}  # watched PRs: the updated_at awaited
    found: dict[str, float] = {}
    watching = asyncio.create_task(watch(store, pending, found))
    async with aiohttp.ClientSession() as session:
        github = _load("GitHub", "webhook_service.github.client", "webhook_service.github")
        worker_class = _load("PRSyncWorker", "webhook_service.sync.poller", "webhook_service.sync")
        extra: dict[str, Any] = {}
        if config["window"] is not None:  # the new worker: plan for the fake's scaled window
            limits = _load("Limits", "webhook_service.github.budget")
            extra["limits"] = limits(share=settings.sync_budget_share, window=config["window"])
        worker = worker_class(store, reconciler, github(session, settings, **extra), settings)
        handlers: dict[str, Any] = {  # a handler may be async
            "start": lambda op: worker.start(),
            "stats": lambda op: {"now": time.monotonic()} | {
                n: worker.get_stats().get(n) for n in ("sync_count", "error_count")},
            "watch": lambda op: pending.update(
                {(c["repository"], int(c["number"])): c["updated_at"] for c in op["changes"]}),
            "found": lambda op: {"found": found, "pending": len(pending)},
            "verify": lambda op: verify(store, op["expect"]),
            "quit": lambda op: worker.stop(grace=float(op["grace"])),
        }  # fmt: skip
        replies.write(json.dumps({"package": webhook_service.__file__}) + "\n")
        while line := await asyncio.to_thread(sys.stdin.readline):
            op: dict[str, Any] = json.loads(line)
            try:
                answer = handlers[op["op"]](op)
                answer = await answer if asyncio.iscoroutine(answer) else answer
            except Exception as exc:
                logging.getLogger("bench_poll").exception("operation %s failed", op["op"])
                answer = {"failed": repr(exc)}
            answer = answer if isinstance(answer, dict) else {}
            replies.write(json.dumps(answer | {"rss_peak": vm_hwm()}) + "\n")
            if op["op"] == "quit":
                break
        await worker.stop(grace=1.0)
    watching.cancel()
    await reconciler.stop()
    await store.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s: %(message)s")
    _replies = os.fdopen(os.dup(1), "w", buffering=1)  # stdout is the answers' alone
    os.dup2(2, 1)
    asyncio.run(run(json.loads(sys.stdin.readline()), _replies))
