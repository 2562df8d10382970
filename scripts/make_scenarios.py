"""Build fixtures/scenarios/: ordered delivery sets made from the recorded payloads.

Each scenario is a directory of deliveries numbered in the order GitHub would send
them (``NN-<event>.<action>``); the derived bodies differ from the recorded ones only
in the pull request's state, merge fields, draft flag and ``updated_at`` (and the
action). Run it again to rebuild them: ``.venv-dev/bin/python scripts/make_scenarios.py``.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid
from typing import Any

from webhook_service.ingest.fixtures import fixtures_root, load_delivery, write_delivery

OUT = fixtures_root().parent / "scenarios"
T = "2019-05-15T15:{:02d}:{:02d}Z"


def _stamp(step: int) -> str:
    return T.format(20 + step // 60, step % 60)


def _delivery(source: str, action: str, step: int, **pr: Any) -> tuple[str, bytes, dict[str, str]]:
    recorded = load_delivery(fixtures_root() / f"{source}.json")
    document = json.loads(recorded.body)
    document["action"] = action
    document["pull_request"].update(pr, updated_at=_stamp(step))
    headers = dict(recorded.headers)
    event = recorded.event
    headers["X-GitHub-Delivery"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"scenario:{source}:{step}"))
    body = (json.dumps(document, indent=2) + "\n").encode()
    return f"{event}.{action}", body, headers


OPEN = {"state": "open", "merged": False, "merged_at": None, "closed_at": None}
CLOSED = {"state": "closed", "merged": False, "merged_at": None, "closed_at": _stamp(2)}


def merged(step: int) -> dict[str, Any]:
    return {"state": "closed", "merged": True, "merged_at": _stamp(step), "closed_at": _stamp(step)}


SCENARIOS: dict[str, list[tuple[str, bytes, dict[str, str]]]] = {
    "open-review-merge": [
        _delivery("pull_request/opened", "opened", 1, **OPEN),
        _delivery("pull_request_review/submitted", "submitted", 2, state="open"),
        _delivery("pull_request/closed.merged", "closed", 3, **merged(3)),
    ],
    "open-close-reopen-merge": [
        _delivery("pull_request/opened", "opened", 1, **OPEN),
        _delivery("pull_request/closed", "closed", 2, **CLOSED),
        _delivery("pull_request/reopened", "reopened", 3, **OPEN),
        _delivery("pull_request/closed.merged", "closed", 4, **merged(4)),
    ],
    "draft-ready-merge": [
        _delivery("pull_request/opened", "opened", 1, **OPEN, draft=True),
        _delivery("pull_request/ready_for_review", "ready_for_review", 2, **OPEN, draft=False),
        _delivery("pull_request/closed.merged", "closed", 3, **merged(3)),
    ],
}


def _shuffled() -> list[tuple[str, bytes, dict[str, str]]]:
    """open -> close -> reopen -> merge, delivered out of order with duplicates."""
    items = list(SCENARIOS["open-close-reopen-merge"])
    items += [items[0], items[2]]  # GitHub redelivering the same GUIDs
    random.Random(2026).shuffle(items)
    return items


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for name, items in {**SCENARIOS, "shuffled-duplicates": _shuffled()}.items():
        for index, (label, body, headers) in enumerate(items, start=1):
            write_delivery(OUT / name, f"{index:02d}-{label}", headers, body)
    print(f"wrote {sum(1 for _ in OUT.rglob('*.json'))} deliveries under {OUT}")


if __name__ == "__main__":
    main()
