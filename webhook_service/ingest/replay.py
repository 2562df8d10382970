"""Replaying recorded deliveries (to a running service over HTTP, or offline), recording
stored deliveries as fixtures, and re-running stored deliveries through the core.

Over HTTP a delivery is sent as GitHub would send it: the raw body bytes, every
recorded header, and a fresh ``X-Hub-Signature-256`` for the target's secret. Offline
it is applied straight into the core (``sync_source: "replay"``) against the database.
A bad fixture is reported by name and skipped; the run goes on.
"""

from __future__ import annotations

import asyncio
import glob
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from webhook_service.core.model import Observation, Source
from webhook_service.core.payloads import PayloadError, decode_body, parse_delivery
from webhook_service.ingest.fixtures import (
    BODY_SUFFIX,
    FixtureError,
    RecordedDelivery,
    load_delivery,
    write_delivery,
)
from webhook_service.ingest.signature import sign
from webhook_service.reconciler import Job, Reconciler
from webhook_service.store import Store, StoreUnavailable

#: Headers never replayed as recorded: the signature is made anew for the target.
_DROPPED = {"x-hub-signature", "x-hub-signature-256", "content-length", "host"}


@dataclass(slots=True)
class Summary:
    sent: int = 0
    applied: int = 0
    duplicate: int = 0
    ignored: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (fixture, reason)
    bad: list[tuple[str, str]] = field(default_factory=list)  # fixtures that did not load

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.bad

    def count(self, status: str) -> None:
        if status == "applied":
            self.applied += 1
        elif status == "duplicate":
            self.duplicate += 1
        elif status == "ignored":
            self.ignored += 1

    def lines(self) -> list[str]:
        out = [
            f"sent {self.sent}, applied {self.applied}, duplicate {self.duplicate}, "
            f"ignored {self.ignored}, rejected {len(self.rejected)}, bad fixtures {len(self.bad)}"
        ]
        out += [f"  rejected {name}: {reason}" for name, reason in self.rejected]
        out += [f"  bad fixture {name}: {reason}" for name, reason in self.bad]
        return out


def collect(
    paths: Iterable[str], order: str = "name"
) -> tuple[list[RecordedDelivery], list[tuple[str, str]]]:
    """The deliveries named by files, directories and globs; and the ones that failed."""
    files: set[Path] = set()
    bad: list[tuple[str, str]] = []
    for pattern in paths:
        matches = [Path(m) for m in glob.glob(pattern, recursive=True)] or [Path(pattern)]
        for match in matches:
            if match.is_dir():
                files.update(match.rglob(f"*{BODY_SUFFIX}"))
            elif match.exists():
                files.add(match)
            else:
                bad.append((pattern, "no such file or directory"))
    deliveries = []
    for path in sorted(files):
        try:
            deliveries.append(load_delivery(path))
        except FixtureError as exc:
            bad.append((str(path), str(exc)))
    if order == "updated_at":
        deliveries.sort(key=_updated_at)
    return deliveries, bad


def _updated_at(delivery: RecordedDelivery) -> str:
    try:
        document = orjson.loads(delivery.body)
    except orjson.JSONDecodeError:
        return ""
    pr = document.get("pull_request") if isinstance(document, dict) else None
    return str(pr.get("updated_at") or "") if isinstance(pr, dict) else ""


def _recorded_headers(delivery: RecordedDelivery) -> dict[str, str]:
    return {k: v for k, v in delivery.headers.items() if k.lower() not in _DROPPED}


def headers_for(delivery: RecordedDelivery, secret: str, *, new_guid: bool) -> dict[str, str]:
    """The recorded headers, signed for ``secret`` (and with a new GUID if asked)."""
    headers = _recorded_headers(delivery)
    if new_guid:
        for name in list(headers):
            if name.lower() == "x-github-delivery":
                headers[name] = str(uuid.uuid4())
    headers["X-Hub-Signature-256"] = sign(delivery.body, secret=secret.encode())
    return headers


async def replay_http(
    deliveries: Sequence[RecordedDelivery],
    *,
    url: str,
    secret: str,
    rate: float | None = None,
    new_guid: bool = False,
    retries: int = 3,
    retry_delay: float = 0.5,
    progress: Callable[[int], None] = lambda done: None,
) -> Summary:
    """POST each delivery to ``url`` (the receiver's full URL), in order."""
    summary = Summary()
    timeout = aiohttp.ClientTimeout(total=15.0)
    # aiohttp, not httpx: it is already a runtime dependency (gidgethub's client).
    async with aiohttp.ClientSession(timeout=timeout) as client:
        for done, delivery in enumerate(deliveries, start=1):
            name = str(delivery.path)
            headers = headers_for(delivery, secret, new_guid=new_guid)
            reason = await _post(client, url, delivery.body, headers, summary, retries, retry_delay)
            if reason is not None:
                summary.rejected.append((name, reason))
            progress(done)
            if rate:
                await asyncio.sleep(1.0 / rate)
    return summary


async def _post(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    summary: Summary,
    retries: int,
    retry_delay: float,
) -> str | None:
    """Send one delivery; None when accepted, else why not. 5xx and connection
    errors are retried with backoff; a 4xx is the target's final answer."""
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(retry_delay * 2 ** (attempt - 1))
        try:
            async with client.post(url, data=body, headers=headers) as response:
                status, text = response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{url}: {type(exc).__name__}: {exc or 'connection failed'}"
            continue
        summary.sent += 1
        answer = _answer(text)
        if 200 <= status < 300:
            summary.count(str(answer.get("status", "applied")))
            return None
        reason = f"HTTP {status}: {answer.get('error') or text[:200]}"
        if status < 500:
            return reason
    return f"{reason} (after {retries} retries)"


def _answer(text: str) -> dict[str, Any]:
    """The receiver's JSON answer, or {} for anything else."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


async def replay_offline(
    deliveries: Sequence[RecordedDelivery],
    reconciler: Reconciler,
    *,
    new_guid: bool = False,
    progress: Callable[[int], None] = lambda done: None,
) -> Summary:
    """Apply each delivery straight into the core, as the receiver would have."""
    summary = Summary()
    for done, delivery in enumerate(deliveries, start=1):
        name = str(delivery.path)
        guid = str(uuid.uuid4()) if new_guid else delivery.guid
        content_type = (delivery.header("Content-Type") or "application/json").split(";")[0]
        try:
            parsed = parse_delivery(
                guid, delivery.event, decode_body(delivery.body, content_type.strip().lower())
            )
        except PayloadError as exc:
            summary.rejected.append((name, str(exc)))
            continue
        job = Job.for_delivery(
            parsed,
            source=Source.REPLAY,
            headers=_recorded_headers(delivery) | {"X-GitHub-Delivery": guid},
            body=delivery.body,
        )
        try:
            result = await reconciler.submit(job)
        except StoreUnavailable as exc:
            summary.rejected.append((name, f"database unavailable: {exc}"))
            continue
        summary.sent += 1
        if result.status == "failed":
            summary.rejected.append((name, result.detail or "failed"))
        else:
            summary.count(result.status)
        progress(done)
    return summary


# -- recording and redelivering stored deliveries ------------------------------------

#: Never written to a fixture: signatures (made anew at replay) and credentials.
_SCRUBBED = _DROPPED | {"authorization", "cookie", "proxy-authorization"}


def canonical_header(name: str) -> str:
    """``x-github-hook-id`` -> ``X-GitHub-Hook-ID`` (stored names are lower case)."""
    special = {"github": "GitHub", "id": "ID", "www": "WWW"}
    return "-".join(special.get(part, part.capitalize()) for part in name.lower().split("-"))


async def record(store: Store, out: Path, **filters: Any) -> list[Path]:
    """Write stored deliveries out as fixtures (body byte-exact, headers scrubbed)."""
    written = []
    stored = await store.list_deliveries(**filters)
    width = len(str(len(stored)))
    for index, delivery in enumerate(stored, start=1):
        headers = {
            canonical_header(k): v
            for k, v in delivery.headers.items()
            if k.lower() not in _SCRUBBED
        }
        directory = out / _safe(delivery.event)
        # Numbered in the order received, so that replaying the directory keeps it.
        name = f"{index:0{width}d}-{_safe(delivery.guid)}"
        written.append(write_delivery(directory, name, headers, delivery.body))
    return written


def _safe(name: str) -> str:
    """A file-name-safe version of a GUID or event name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


@dataclass(frozen=True, slots=True)
class Redelivered:
    guid: str
    outcome: str  # the core's outcome, or why it could not be re-run
    events: int


async def redeliver(
    store: Store, reconciler: Reconciler, guids: Sequence[str]
) -> list[Redelivered]:
    """Run stored deliveries through the core again (after a bug fix, say) and say what
    changed. They are observations now: the GUIDs are already recorded."""
    stored = {d.guid: d for d in await store.list_deliveries(guids=guids)}
    report = []
    for guid in guids:
        delivery = stored.get(guid)
        if delivery is None:
            report.append(Redelivered(guid, "not stored", 0))
            continue
        content_type = str(delivery.headers.get("content-type", "application/json"))
        try:
            document = decode_body(delivery.body, content_type.split(";")[0].strip().lower())
            parsed = parse_delivery(guid, delivery.event, document)
        except PayloadError as exc:
            report.append(Redelivered(guid, f"unreadable: {exc}", 0))
            continue
        if parsed.snapshot is None:
            report.append(Redelivered(guid, f"event {delivery.event!r} is not acted on", 0))
            continue
        result = await reconciler.observe(Observation(parsed.snapshot, Source.REPLAY, guid))
        report.append(Redelivered(guid, str(result.outcome or result.status), len(result.events)))
    return report
