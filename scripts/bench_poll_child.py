"""The poller process of ``scripts/bench_poll.py``: one sync worker, driven over stdin.

    python scripts/bench_poll_child.py CONFIG.json

Builds ``Store``, ``Reconciler``, ``GitHub`` and ``PRSyncWorker`` as the service does,
from whatever ``webhook_service`` is importable: the checkout's, or (``PYTHONPATH``) an
older tree's, for the baseline. It only uses what both have; the new worker also gets
``Limits(window=...)`` for the time-scaled run. The parent sends one JSON operation a
line and reads one answer a line (prefixed with ``MARK``):

- ``start``: the worker's own loop (``PRSyncWorker.start``), every ``SYNC_INTERVAL``;
- ``stats``: its counters;
- ``watch``: PRs changed at ``injected`` (``time.monotonic()``, the same clock in every
  process on Linux) with their new ``updated_at``; a task reads the store every 50 ms
  and notes when each row has it;
- ``found``: when each watched PR was seen; ``verify``: stored fields against the fake's;
- ``quit``: stop the worker, answer with the peak RSS.

The RSS is sampled every 20 ms for the whole life of the process, and VmHWM (the kernel's
peak) is read at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARK = "@@bench_poll "
WATCH_EVERY = 0.05  # seconds between store reads for watched PRs

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class RssSampler:
    """The process's peak RSS, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = self.rss()
        threading.Thread(target=self._run, name="rss-sampler", daemon=True).start()

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            time.sleep(self._interval)


def vm_hwm() -> int:
    """This process's peak RSS since it exec'd (VmHWM; ``ru_maxrss`` would include the
    forked parent's)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reply(message: Mapping[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Watcher:
    """When each watched PR's stored ``updated_at`` reached the fake's."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.pending: dict[tuple[str, int], str] = {}  # key -> the updated_at awaited
        self.found: dict[str, float] = {}  # "repo#number" -> time.monotonic() seen

    def add(self, changes: list[dict[str, Any]]) -> None:
        for change in changes:
            self.pending[(change["repository"], int(change["number"]))] = change["updated_at"]

    async def run(self) -> None:
        from webhook_service.store import UnitOfWork

        while True:
            await asyncio.sleep(WATCH_EVERY)
            if not self.pending:
                continue
            keys = list(self.pending)
            async with self._store.connection() as conn:
                rows = await UnitOfWork(conn).load_pulls(keys)
            now = time.monotonic()
            for key in keys:
                row = rows.get(key)
                have = stamp(row.github_updated_at) if row is not None else None
                if have is not None and have >= self.pending[key]:
                    del self.pending[key]
                    self.found[f"{key[0]}#{key[1]}"] = now


async def verify(store: Any, expect: list[dict[str, Any]]) -> list[str]:
    """Stored fields of each PR against the fake's (status, title, head, draft, time):
    a line per PR that differs."""
    mismatches = []
    for want in expect:
        got = await store.get_pull(want["repository"], want["number"])
        label = f"{want['repository']}#{want['number']}"
        if got is None:
            mismatches.append(f"{label}: not in the store")
            continue
        have = {
            "status": got.status.value,
            "title": got.title,
            "head_sha": got.head_sha,
            "draft": got.draft,
            "updated_at": stamp(got.github_updated_at),
        }
        differ = [f"{k} {v!r} != {want[k]!r}" for k, v in have.items() if v != want[k]]
        if differ:
            mismatches.append(f"{label}: {', '.join(differ)}")
    return mismatches


async def serve(handlers: Mapping[str, Handler], sampler: RssSampler) -> None:
    """Answer the parent's operations until "quit" or EOF."""
    import webhook_service

    reply({"op": "ready", "package": webhook_service.__file__, "rss": sampler.rss()})
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        op: dict[str, Any] = json.loads(line)
        try:
            answer = await handlers[op["op"]](op)
        except Exception as exc:
            logging.getLogger("bench_poll").exception("operation %s failed", op["op"])
            reply({"op": op["op"], "failed": repr(exc)})
            continue
        reply(answer | {"op": op["op"]})
        if op["op"] == "quit":
            return


def _settings(config: Mapping[str, Any]) -> Any:
    from webhook_service.config import load_settings

    environ = {
        "GITHUB_TOKEN": config["token"],
        "GITHUB_API_URL": config["api_url"],
        "GITHUB_REPOSITORIES": ",".join(config["repositories"]),
        "DATABASE_URL": config["database_url"],
    }
    return load_settings(environ | config["env"], env_file=None)


STATS = (
    *("sync_count", "error_count", "last_error", "first_sweep_done", "api_calls"),
    *("rate_limited", "secondary_refusals", "searches", "repositories_swept"),
)


async def run(config: Mapping[str, Any]) -> None:
    import aiohttp

    from webhook_service.github.client import GitHub
    from webhook_service.reconciler import Reconciler
    from webhook_service.store import Store
    from webhook_service.sync.poller import PRSyncWorker

    sampler = RssSampler()
    settings = _settings(config)
    store = Store(settings.database_url.reveal())
    await store.connect()
    await store.migrate()
    reconciler = Reconciler(
        store, task_branch_pattern=settings.task_branch_pattern, batch_max=settings.ingest_batch_max
    )
    reconciler.start()
    extra: dict[str, Any] = {}
    if config["window"] is not None:  # the new worker: plan for the fake's scaled window
        from webhook_service.github.budget import Limits

        extra["limits"] = Limits(share=settings.sync_budget_share, window=config["window"])
    watcher = Watcher(store)
    watching = asyncio.create_task(watcher.run())
    async with aiohttp.ClientSession() as session:
        worker = PRSyncWorker(store, reconciler, GitHub(session, settings, **extra), settings)

        async def start(op: dict[str, Any]) -> dict[str, Any]:
            await worker.start()
            return {}

        async def stats(op: dict[str, Any]) -> dict[str, Any]:
            found = worker.get_stats()
            return {name: found.get(name) for name in STATS} | {"now": time.monotonic()}

        async def watch(op: dict[str, Any]) -> dict[str, Any]:
            watcher.add(op["changes"])
            return {}

        async def found(op: dict[str, Any]) -> dict[str, Any]:
            return {"found": watcher.found, "pending": len(watcher.pending)}

        async def check(op: dict[str, Any]) -> dict[str, Any]:
            return {"mismatches": await verify(store, op["expect"])}

        async def quit_(op: dict[str, Any]) -> dict[str, Any]:
            await worker.stop(grace=float(op.get("grace", 5.0)))
            watching.cancel()
            return {"rss_peak": max(sampler.peak, vm_hwm()), "rss": sampler.rss()}

        handlers = {"start": start, "stats": stats, "watch": watch, "found": found}
        await serve(handlers | {"verify": check, "quit": quit_}, sampler)
        await worker.stop(grace=1.0)
    watching.cancel()
    await reconciler.stop()
    await store.disconnect()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    config: dict[str, Any] = json.loads(Path(argv[1]).read_text())
    asyncio.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
