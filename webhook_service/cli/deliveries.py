"""The commands on recorded and stored webhook deliveries: ``replay`` fixtures (over
HTTP or straight into the database), ``record`` stored deliveries as fixtures, and
``redeliver`` stored ones through the core again."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from webhook_service.cli.database import database, reconciling
from webhook_service.cli.output import Progress, table
from webhook_service.config import ConfigError, Settings


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    """Replay recorded deliveries; exits non-zero if any was bad or refused."""
    from webhook_service.ingest.replay import collect, replay_http, replay_offline

    deliveries, bad = collect(args.paths, args.order)
    progress = Progress(len(deliveries))
    if args.offline:
        # Replaying recorded deliveries never queues the removal of a worktree.
        async with (
            database(settings) as store,
            reconciling(settings, store, cleanup_on_merge=False) as reconciler,
        ):
            summary = await replay_offline(
                deliveries, reconciler, new_guid=args.new_guid, progress=progress
            )
    else:
        secret = args.secret or (
            settings.webhook_secrets[0].reveal() if settings.webhook_secrets else None
        )
        if secret is None:
            raise ConfigError("replay over HTTP needs --secret or WEBHOOK_SECRET")
        url = args.url or f"http://{settings.host}:{settings.port}{settings.webhook_path}"
        summary = await replay_http(
            deliveries,
            url=url,
            secret=secret,
            rate=args.rate,
            new_guid=args.new_guid,
            progress=progress,
        )
    progress.finish()
    summary.bad[:0] = bad
    for line in summary.lines():
        print(line)
    return 0 if summary.ok else 1


async def record(settings: Settings, args: argparse.Namespace) -> int:
    from webhook_service.core.payloads import PayloadError, parse_timestamp
    from webhook_service.ingest.replay import record as record_deliveries

    try:
        since = parse_timestamp(args.since) if args.since else None
    except PayloadError as exc:
        raise ConfigError(f"--since: {exc}") from None
    async with database(settings) as store:
        written = await record_deliveries(
            store, Path(args.out), since=since, event=args.event, repository=args.repository
        )
    for path in written:
        print(path)
    print(f"recorded {len(written)} deliveries in {args.out}", file=sys.stderr)
    return 0


async def redeliver(settings: Settings, guids: Sequence[str]) -> int:
    from webhook_service.ingest.replay import redeliver as redeliver_stored

    async with database(settings) as store, reconciling(settings, store) as reconciler:
        report = await redeliver_stored(store, reconciler, guids)
    rows = [{"guid": r.guid, "outcome": r.outcome, "events": r.events} for r in report]
    print(table(rows, ["guid", "outcome", "events"]))
    known = {"created", "transitioned", "updated", "unchanged", "stale", "terminal", "ambiguous"}
    return 0 if all(r.outcome in known for r in report) else 1
