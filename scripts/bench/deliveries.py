"""Realistic signed ``pull_request`` deliveries built from the recorded fixtures, and
the check that a server stored them: every 2xx applied, each PR's row as its last
delivery says. Bodies are the fixtures re-rendered for each PR (~28 KB, two-space
indentation like GitHub's), each with its own GUID and ``X-Hub-Signature-256``."""

from __future__ import annotations

import base64
import itertools
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench.report import BenchError
from bench.scratch_db import query
from bench.servers import REPO_ROOT
from webhook_service.ingest.fixtures import load_delivery
from webhook_service.ingest.signature import sign

FIXTURES = REPO_ROOT / "fixtures" / "deliveries" / "pull_request"
#: The PRs are spread over these (octo-org's use ``.with-organization`` fixtures).
REPOSITORIES = ("Codertocat/Hello-World", "octo-org/octo-repo", "octo-org/api-server",
                "Codertocat/docs")  # fmt: skip
#: Story step -> fixture stem (``merged`` is a closed+merged delivery).
TEMPLATES = {k: k for k in ("opened", "synchronize", "labeled", "unlabeled", "assigned",
    "unassigned", "review_requested", "review_request_removed", "ready_for_review",
    "converted_to_draft", "locked", "unlocked", "closed", "reopened")} | {"merged": "closed.merged"}
#: Updates in the middle of a story, with their relative frequency.
UPDATES = {"synchronize": 8, "labeled": 3, "review_requested": 3, "assigned": 2, "unlabeled": 1,
           "unassigned": 1, "review_request_removed": 1, "converted_to_draft": 1, "locked": 0.2,
           "unlocked": 0.2}  # fmt: skip
EPOCH_2024 = 1_704_067_200
#: The timeline lasts N minutes (at least a day); a PR's deliveries are 200 minutes to days
#: apart (squeezed into half of it for long stories): at C ~ 16 they rarely overtake.
SECONDS_PER_DELIVERY, MIN_GAP, MEAN_EXTRA_GAP = 60, 200 * 60, 12 * 3600
Final = tuple[str, bool, str, int]  # status, draft, head SHA, updated_at (epoch s)
Key = tuple[str, int]
Headers = dict[str, str]
Step = tuple[int, int, int, str]  # at, PR index, seq, kind


@dataclass(slots=True)
class PR:
    repository: str
    number: int
    github_id: int
    created_at: int
    title: str
    head_ref: str
    draft: bool = False
    state: str = "open"
    merged: bool = False
    closed_at: int | None = None
    merged_at: int | None = None
    head_sha: str = ""
    commits: int = 1

    def advance(self, kind: str, at: int, rng: random.Random) -> None:
        """Apply one step of the story."""
        if kind in ("opened", "synchronize") or not self.head_sha:
            self.head_sha = f"{rng.getrandbits(160):040x}"
            self.commits += kind == "synchronize"
        if kind in ("ready_for_review", "converted_to_draft"):
            self.draft = kind == "converted_to_draft"
        elif kind in ("closed", "merged"):
            self.state, self.closed_at = "closed", at
            if kind == "merged":
                self.merged_at, self.merged = at, True
        elif kind == "reopened":
            self.state, self.closed_at = "open", None


def _stamp(seconds: int | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Renderer:
    """Fixture documents pointed at a PR as it is at some moment, signed."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.templates: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        for path in sorted(FIXTURES.glob("*.json")):
            delivery = load_delivery(path)
            self.templates[path.stem] = (orjson.loads(delivery.body), dict(delivery.headers))
        if missing := sorted(set(TEMPLATES.values()) - set(self.templates)):
            raise BenchError(f"fixtures missing under {FIXTURES}: {', '.join(missing)}")
        self.merged_by = self.templates["closed.merged"][0]["pull_request"]["merged_by"]

    def render(self, pr: PR, kind: str, at: int, rng: random.Random) -> tuple[str, Headers, bytes]:
        """(GUID, headers, body) of the ``kind`` delivery about ``pr`` at ``at``."""
        stem = TEMPLATES[kind]
        if pr.repository.startswith("octo-org/") and f"{stem}.with-organization" in self.templates:
            stem = f"{stem}.with-organization"
        doc, fixture_headers = self.templates[stem]
        owner, name = pr.repository.split("/")
        api, web = f"https://api.github.com/repos/{pr.repository}", f"https://github.com/{pr.repository}"
        n = pr.number
        doc["number"] = n
        p = doc["pull_request"]
        p.update(
            url=f"{api}/pulls/{n}", id=pr.github_id,
            node_id=base64.b64encode(f"011:PullRequest{pr.github_id}".encode()).decode(),
            html_url=f"{web}/pull/{n}", diff_url=f"{web}/pull/{n}.diff",
            patch_url=f"{web}/pull/{n}.patch", issue_url=f"{api}/issues/{n}",
            commits_url=f"{api}/pulls/{n}/commits", review_comments_url=f"{api}/pulls/{n}/comments",
            comments_url=f"{api}/issues/{n}/comments", statuses_url=f"{api}/statuses/{pr.head_sha}",
            number=n, state=pr.state, title=pr.title, draft=pr.draft,
            created_at=_stamp(pr.created_at), updated_at=_stamp(at),
            closed_at=_stamp(pr.closed_at), merged_at=_stamp(pr.merged_at), merged=pr.merged,
            merged_by=self.merged_by if pr.merged else None, commits=pr.commits,
        )  # fmt: skip
        p["head"].update(ref=pr.head_ref, sha=pr.head_sha, label=f"{owner}:{pr.head_ref}")
        for side in (p["head"], p["base"]):
            if isinstance(side.get("repo"), dict):
                side["repo"].update(full_name=pr.repository, name=name)
        doc["repository"].update(full_name=pr.repository, name=name, html_url=web, url=api)
        body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        headers = {**fixture_headers, "X-GitHub-Delivery": guid,
                   "X-Hub-Signature-256": sign(body, secret=self.secret)}  # fmt: skip
        return guid, headers, body


def _story(rng: random.Random, length: int) -> list[str]:
    """One PR's life: opened (maybe as a draft), updates, and usually an ending."""
    draft = rng.random() < 0.2
    steps = ["opened-draft" if draft else "opened"]
    if length == 1:
        return steps
    ends = rng.random() < 0.85
    middle = length - 1 - ends
    reopen_at = rng.randrange(middle - 1) if middle >= 3 and rng.random() < 0.1 else -1
    while len(steps) - 1 < middle:
        if len(steps) - 1 == reopen_at:
            steps += ["closed", "reopened"]
            continue
        if draft and rng.random() < 0.4:
            kind = "ready_for_review"
        else:
            kind = rng.choices(list(UPDATES), list(UPDATES.values()))[0]
            if kind == "converted_to_draft" and draft:
                kind = "synchronize"
        draft = {"ready_for_review": False, "converted_to_draft": True}.get(kind, draft)
        steps.append(kind)
    if ends:  # a draft cannot be merged; it can be closed
        steps.append("merged" if not draft and rng.random() < 0.75 else "closed")
    return steps


@dataclass(slots=True)
class Workload:
    """N deliveries about P PRs: ``requests.bin`` (header lines, blank line, body, back to
    back) and ``manifest.txt`` ("offset length guid" per delivery, in send order)."""

    manifest: Path
    requests: Path
    secret: str
    deliveries: int
    prs: int
    #: (repository, number) -> what its last delivery says; whatever order they arrive
    #: in, the row must end so (older ones are stale, a merge is final and last).
    expected: dict[tuple[str, int], Final] = field(default_factory=dict)


def _plan(rng: random.Random, n: int, p: int, w: Workload) -> tuple[list[PR], list[Step]]:
    """The PRs and their steps (at, PR index, seq, kind) in time order."""
    lengths = [1] * p  # skewed: a few PRs get many deliveries
    if n > p:
        weights = [rng.lognormvariate(0.0, 0.8) for _ in range(p)]
        for index in rng.choices(range(p), weights, k=n - p):
            lengths[index] += 1
    prs: list[PR] = []
    steps: list[Step] = []
    timeline = max(86_400, n * SECONDS_PER_DELIVERY)
    for index, length in enumerate(lengths):
        repository, number = REPOSITORIES[index % 4], index // 4 + 1
        kinds = _story(rng, length)
        gaps = [MIN_GAP + rng.expovariate(1 / MEAN_EXTRA_GAP) for _ in kinds[1:]]
        squeeze = min(1.0, timeline / 2 / sum(gaps)) if gaps else 1.0
        offsets = [0, *itertools.accumulate(max(1, int(g * squeeze)) for g in gaps)]
        created = EPOCH_2024 + rng.randrange(max(1, timeline - offsets[-1]))
        title = f"Change {number} in {repository}"
        ref = f"feature/{number}-{rng.getrandbits(24):06x}"
        prs.append(PR(repository, number, 300_000_000 + index, created, title, ref))
        steps += [(created + offset, index, seq, kind)
                  for seq, (kind, offset) in enumerate(zip(kinds, offsets, strict=True))]
        status = {"merged": "MERGED", "closed": "CLOSED"}.get(kinds[-1], "OPEN")
        w.expected[(repository, number)] = (status, False, "", created + offsets[-1])
    steps.sort()
    return prs, steps


def generate(directory: Path, n: int, p: int, seed: int) -> Workload:
    """The ingest workload: N deliveries about P PRs with realistic stories, interleaved."""
    rng = random.Random(seed)
    renderer = Renderer(secrets.token_hex(16))
    w = Workload(directory / "manifest.txt", directory / "requests.bin",
                 renderer.secret.decode(), n, p)  # fmt: skip
    prs, steps = _plan(rng, n, p, w)
    offset = 0
    with w.requests.open("wb") as out, w.manifest.open("w") as manifest:
        for at, index, _, kind in steps:
            pr = prs[index]
            if kind == "opened-draft":
                kind, pr.draft = "opened", True
            pr.advance(kind, at, rng)
            guid, headers, body = renderer.render(pr, kind, at, rng)
            headers["Content-Length"] = str(len(body))
            chunk = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n" + body
            out.write(chunk)
            manifest.write(f"{offset} {len(chunk)} {guid}\n")
            offset += len(chunk)
    for pr in prs:
        status, _, _, at = w.expected[(pr.repository, pr.number)]
        w.expected[(pr.repository, pr.number)] = (status, pr.draft, pr.head_sha, at)
    return w


def requests(w: Workload) -> Iterator[tuple[str, bytes]]:
    """(GUID, body) of each delivery of ``w``, in send order."""
    with w.manifest.open() as manifest, w.requests.open("rb") as data:
        for line in manifest:
            offset, length, guid = line.split()
            data.seek(int(offset))
            chunk = data.read(int(length))
            yield guid, chunk[chunk.index(b"\r\n\r\n") + 4 :]


@dataclass(slots=True)
class Verification:
    """What the server stored, against what it acknowledged and what was sent."""

    rows: int = 0
    applied: int = 0
    details: Counter[str] = field(default_factory=Counter)
    missing: int = 0  # 2xx GUIDs not stored as applied
    extra: int = 0  # stored GUIDs that got no 2xx
    prs: int = 0
    wrong_prs: int = 0  # rows whose status/draft/head/updated_at are not the last delivery's
    wrong_examples: list[str] = field(default_factory=list)

    def passed(self, ok_responses: int, prs: int) -> bool:
        return (self.rows == ok_responses == self.applied and self.missing == 0
                and self.extra == 0 and self.prs == prs and self.wrong_prs == 0)  # fmt: skip


def _epoch(value: Any) -> int:
    """A stored timestamp (datetime from asyncpg, ISO text from SQLite) in epoch seconds."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return int(when.timestamp())


def verify(url: str, ok_guids: Sequence[str], expected: Mapping[Key, Final] = {}) -> Verification:
    """Counts; with ``expected``, also each PR's final row."""
    rows = query(url, "SELECT guid, outcome, detail FROM webhook_deliveries")
    final = query(url, "SELECT repository, number, status, draft, head_sha, github_updated_at"
                       " FROM pull_requests")  # fmt: skip
    ok, applied = set(ok_guids), {str(g) for g, outcome, _ in rows if outcome == "applied"}
    v = Verification(len(rows), len(applied), Counter(f"{o}/{d}" for _, o, d in rows),
                     len(ok - applied), len({str(g) for g, _, _ in rows} - ok), len(final))
    stored = {(str(r[0]), int(r[1])): (str(r[2]), bool(r[3]), str(r[4]), _epoch(r[5]))
              for r in final}
    for key, want in sorted(expected.items()):
        if stored.get(key) != want:
            v.wrong_prs += 1
            if len(v.wrong_examples) < 3:
                v.wrong_examples.append(f"{key[0]}#{key[1]}: stored {stored.get(key)}, want {want}")
    return v
