"""SIGTERM under a webhook load: in-flight deliveries finish, the process exits 0
within 10 s, and every delivery it acknowledged is stored and applied (issue #7)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from tests._load import Attempt, WebhookLoad
from tests.helpers import server_env
from tests.servers import ServerProcess
from webhook_service.store import Store

CONCURRENCY = 16
ACKED_BEFORE_SIGTERM = 150
EXIT_WITHIN = 10.0


def _wait(process: subprocess.Popen[bytes], within: float) -> int | None:
    try:
        return process.wait(within)
    except subprocess.TimeoutExpired:
        return None


async def test_sigterm_under_load_finishes_in_flight_and_exits(
    database_url: str, tmp_path: Path
) -> None:
    env = server_env(database_url, LOG_LEVEL="INFO")
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    process = server.process
    assert process is not None
    try:
        async with WebhookLoad(server.url, concurrency=CONCURRENCY) as load:
            assert await load.wait_for_acks(ACKED_BEFORE_SIGTERM, within=30), server.log_tail()
            process.send_signal(signal.SIGTERM)
            term_at = time.monotonic()
            # The load goes on while the server shuts down.
            returncode = await asyncio.to_thread(_wait, process, EXIT_WITHIN)
            exited_after = time.monotonic() - term_at
    finally:
        server.kill()
    log = server.log_tail()
    assert returncode is not None, f"still running {EXIT_WITHIN:.0f} s after SIGTERM:\n{log}"
    assert returncode == 0, f"exit status {returncode}:\n{log}"
    assert exited_after < EXIT_WITHIN
    whole_log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Application shutdown complete" in whole_log, log  # the lifespan drained
    assert "Traceback" not in whole_log, whole_log

    attempts = load.attempts
    before = [a for a in attempts if a.finished < term_at]
    around = [a for a in attempts if a.started < term_at <= a.finished]
    after = [a for a in attempts if a.started >= term_at]
    # Until the signal, everything is applied; from then on a delivery is applied,
    # refused with 503, or never answered (connection refused or closed), nothing else.
    assert all(a.status == 200 for a in before), _odd(before, (200,))
    assert not _odd(around + after, (200, 503, None)), _odd(around + after, (200, 503, None))
    in_flight_acked = [a for a in around if a.acked]
    assert in_flight_acked, f"no delivery in flight at SIGTERM was answered: {_odd(around, ())}"
    assert [a for a in around + after if a.status is None], "it never stopped accepting"
    print(
        f"\nexit {returncode} {exited_after:.2f} s after SIGTERM; "
        f"{len(in_flight_acked)}/{len(around)} in flight acknowledged, "
        f"{len(load.acked(since=term_at))} started after it acknowledged"
    )

    store = Store(database_url)
    await store.connect()
    try:
        acked = [a for a in attempts if a.acked]
        stored = {
            d.guid: d
            for d in await store.list_deliveries(
                guids=[a.guid for a in acked], limit=len(acked) + 1
            )
        }
        lost = [a.describe() for a in acked if a.guid not in stored]
        assert not lost, f"{len(lost)} acknowledged deliveries were lost: {lost[:10]}"
        unapplied = {g: d.outcome for g, d in stored.items() if d.outcome != "applied"}
        assert not unapplied, f"acknowledged but not applied: {unapplied}"
        pulls = {p.number: p for p in await store.list_pulls(limit=1000)}
        for attempt in in_flight_acked:
            pull = pulls.get(attempt.number)
            assert pull is not None and pull.github_updated_at >= attempt.updated_at, (
                attempt.describe()
            )
    finally:
        await store.disconnect()


def _odd(attempts: list[Attempt], allowed: tuple[int | None, ...]) -> list[str]:
    return [a.describe() for a in attempts if a.status not in allowed][:10]
