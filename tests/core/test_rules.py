"""Tests for webhook_service.core.rules: the pure reconciliation decision (DESIGN.md §2, §3).

The expected results below are written out by hand from DESIGN.md, not derived from
``core.RULES``: the table is the contract, the code has to match it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.shared import (
    CANCELLED,
    CL,
    CLEANUP,
    DONE,
    EQ,
    IMPL,
    MG,
    NEW,
    NEW_PR_ID,
    NONE,
    NOW,
    OFFSET,
    OLD,
    OP,
    PR_ID,
    REFETCH,
    REVIEW,
    STAMP,
    T0,
    TASK_ID,
    TODO,
    event_summary,
    from_observation,
    observe,
    pr_event,
    run,
    snapshot,
    stored_pr,
    task_event,
)
from webhook_service.core.model import (
    Decision,
    EventDraft,
    FollowUp,
    Observation,
    Outcome,
    PRStatus,
    PullRequest,
    Snapshot,
    Source,
    Task,
    TaskStatus,
)
from webhook_service.core.payloads import parse_delivery
from webhook_service.core.rules import RULES, TASK_STATUS_FOR_PR, Freshness, decide_link
from webhook_service.ingest.fixtures import fixtures_root, iter_deliveries, load_delivery

# -- the table: every (stored status, observed status, freshness) ------------------------


@dataclass(frozen=True)
class Row:
    outcome: Outcome
    written: PRStatus | None  # status of the PR row written; None: no PR write
    metadata: str | None  # "observed": the row is the observation's; "stored": kept
    task: TaskStatus | None  # the linked task's new status; None: task not written
    events: tuple[tuple[str, str | None, str], ...] = ()
    follow_ups: frozenset[FollowUp] = NONE


def _nothing(outcome: Outcome, follow_ups: frozenset[FollowUp] = NONE) -> Row:
    return Row(outcome, None, None, None, (), follow_ups)


UPDATED, UNCHANGED, STALE = Outcome.UPDATED, Outcome.UNCHANGED, Outcome.STALE
TERMINAL, AMBIGUOUS, TRANSITIONED = Outcome.TERMINAL, Outcome.AMBIGUOUS, Outcome.TRANSITIONED

#: The task linked to the stored PR starts at the status its PR implies.
TASK_BEFORE = {OP: REVIEW, CL: CANCELLED, MG: DONE}

TABLE: dict[tuple[PRStatus, PRStatus | None, Freshness], Row] = {
    # stored OPEN (task CODE_REVIEWING)
    (OP, OP, NEW): Row(UPDATED, OP, "observed", None),
    (OP, OP, EQ): _nothing(UNCHANGED),
    (OP, OP, OLD): _nothing(STALE),
    (OP, CL, NEW): Row(
        TRANSITIONED,
        CL,
        "observed",
        CANCELLED,
        (pr_event("OPEN", "CLOSED"), task_event("CODE_REVIEWING", "CANCELLED")),
    ),
    (OP, CL, EQ): _nothing(AMBIGUOUS, REFETCH),
    (OP, CL, OLD): _nothing(STALE),
    (OP, MG, NEW): Row(
        TRANSITIONED,
        MG,
        "observed",
        DONE,
        (pr_event("OPEN", "MERGED"), task_event("CODE_REVIEWING", "DONE")),
        CLEANUP,
    ),
    (OP, MG, EQ): Row(
        TRANSITIONED,
        MG,
        "observed",
        DONE,
        (pr_event("OPEN", "MERGED"), task_event("CODE_REVIEWING", "DONE")),
        CLEANUP,
    ),
    (OP, MG, OLD): Row(  # a merge is proof whatever its age; the newer metadata stays
        TRANSITIONED,
        MG,
        "stored",
        DONE,
        (pr_event("OPEN", "MERGED"), task_event("CODE_REVIEWING", "DONE")),
        CLEANUP,
    ),
    (OP, None, NEW): _nothing(AMBIGUOUS, REFETCH),  # an unconfirmed close never closes
    (OP, None, EQ): _nothing(AMBIGUOUS, REFETCH),
    (OP, None, OLD): _nothing(STALE),
    # stored CLOSED (task CANCELLED)
    (CL, OP, NEW): Row(  # reopened
        TRANSITIONED,
        OP,
        "observed",
        REVIEW,
        (pr_event("CLOSED", "OPEN"), task_event("CANCELLED", "CODE_REVIEWING")),
    ),
    (CL, OP, EQ): _nothing(AMBIGUOUS, REFETCH),
    (CL, OP, OLD): _nothing(STALE),
    (CL, CL, NEW): Row(UPDATED, CL, "observed", None),
    (CL, CL, EQ): _nothing(UNCHANGED),
    (CL, CL, OLD): _nothing(STALE),
    (CL, MG, NEW): Row(
        TRANSITIONED,
        MG,
        "observed",
        DONE,
        (pr_event("CLOSED", "MERGED"), task_event("CANCELLED", "DONE")),
        CLEANUP,
    ),
    (CL, MG, EQ): Row(
        TRANSITIONED,
        MG,
        "observed",
        DONE,
        (pr_event("CLOSED", "MERGED"), task_event("CANCELLED", "DONE")),
        CLEANUP,
    ),
    (CL, MG, OLD): Row(
        TRANSITIONED,
        MG,
        "stored",
        DONE,
        (pr_event("CLOSED", "MERGED"), task_event("CANCELLED", "DONE")),
        CLEANUP,
    ),
    (CL, None, NEW): Row(UPDATED, CL, "observed", None),  # still closed: newer metadata only
    (CL, None, EQ): _nothing(UNCHANGED),
    (CL, None, OLD): _nothing(STALE),
    # stored MERGED (task DONE): terminal
    (MG, OP, NEW): _nothing(TERMINAL),
    (MG, OP, EQ): _nothing(TERMINAL),
    (MG, OP, OLD): _nothing(TERMINAL),
    (MG, CL, NEW): _nothing(TERMINAL),
    (MG, CL, EQ): _nothing(TERMINAL),
    (MG, CL, OLD): _nothing(TERMINAL),
    (MG, MG, NEW): Row(UPDATED, MG, "observed", None),
    (MG, MG, EQ): _nothing(UNCHANGED),
    (MG, MG, OLD): _nothing(STALE),
    (MG, None, NEW): _nothing(TERMINAL),
    (MG, None, EQ): _nothing(TERMINAL),
    (MG, None, OLD): _nothing(TERMINAL),
}


def _case_id(key: tuple[PRStatus, PRStatus | None, Freshness]) -> str:
    stored, observed, fresh = key
    return f"{stored}-{observed or 'UNCONFIRMED_CLOSE'}-{fresh}"


def test_table_covers_every_rule() -> None:
    assert set(TABLE) == set(RULES)
    assert len(TABLE) == 3 * 4 * 3


@pytest.mark.parametrize("with_task", [True, False], ids=["linked-task", "no-task"])
@pytest.mark.parametrize("key", list(TABLE), ids=[_case_id(k) for k in TABLE])
def test_rule(key: tuple[PRStatus, PRStatus | None, Freshness], with_task: bool) -> None:
    stored_status, observed_status, fresh = key
    row = TABLE[key]
    task = Task(TASK_ID, TASK_BEFORE[stored_status]) if with_task else None
    stored = stored_pr(stored_status, task_id=TASK_ID if with_task else None)
    observation = observe(observed_status, T0 + OFFSET[fresh], Source.WORKER, "d-77")
    assert observation.snapshot.status is observed_status

    decision = run(stored, task, observation)

    assert decision.outcome is row.outcome
    expected_events = list(row.events)
    expected_follow_ups = row.follow_ups
    if not with_task:
        expected_events = [e for e in expected_events if e[0] == "pr_status_change"]
        expected_follow_ups = row.follow_ups - CLEANUP
    assert event_summary(decision) == expected_events
    assert decision.follow_ups == expected_follow_ups
    assert decision.task == (Task(TASK_ID, row.task) if with_task and row.task else None)

    if row.written is None:
        assert decision.pr is None
        return
    pr = decision.pr
    assert pr is not None
    assert pr.status is row.written
    if row.metadata == "observed":
        assert pr == from_observation(PR_ID, row.written, observation, stored.task_id)
    else:
        # An older merge: the status (and merge time) change, the newer metadata stays.
        assert row.metadata == "stored"
        assert pr.github_updated_at == stored.github_updated_at
        assert (pr.title, pr.head_sha, pr.draft) == (stored.title, stored.head_sha, stored.draft)
        assert pr.merged_at == observation.snapshot.merged_at
        assert (pr.id, pr.task_id) == (stored.id, stored.task_id)
        assert (pr.last_source, pr.last_delivery_id) == (Source.WORKER, "d-77")


# -- first sighting ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [OP, CL, MG])
def test_first_sighting_without_task(status: PRStatus) -> None:
    observation = observe(status, T0)
    decision = run(None, None, observation)
    assert decision.outcome is Outcome.CREATED
    assert decision.pr == from_observation(NEW_PR_ID, status, observation, None)
    assert decision.task is None
    assert event_summary(decision) == [pr_event(None, status)]
    assert decision.follow_ups == NONE


@pytest.mark.parametrize(
    ("status", "task_after", "follow_ups"),
    [(OP, REVIEW, NONE), (CL, CANCELLED, NONE), (MG, DONE, CLEANUP)],
)
@pytest.mark.parametrize("task_before", [TODO, IMPL])
def test_first_sighting_with_task(
    status: PRStatus,
    task_after: TaskStatus,
    follow_ups: frozenset[FollowUp],
    task_before: TaskStatus,
) -> None:
    observation = observe(status, T0)
    decision = run(None, Task(TASK_ID, task_before), observation)
    assert decision.outcome is Outcome.CREATED
    assert decision.pr == from_observation(NEW_PR_ID, status, observation, TASK_ID)
    assert decision.task == Task(TASK_ID, task_after)
    assert event_summary(decision) == [
        pr_event(None, status),
        task_event(task_before, task_after),
    ]
    assert all(e.task_id == TASK_ID for e in decision.events)
    assert decision.events[1].payload["pr_trigger"] is True
    assert decision.follow_ups == follow_ups


def test_first_sighting_with_task_already_at_mapped_status() -> None:
    decision = run(None, Task(TASK_ID, REVIEW), observe(OP, T0))
    assert decision.outcome is Outcome.CREATED
    assert decision.pr is not None
    assert decision.pr.task_id == TASK_ID
    assert decision.task is None
    assert event_summary(decision) == [pr_event(None, "OPEN")]


@pytest.mark.parametrize("task", [None, Task(TASK_ID, IMPL)], ids=["no-task", "task"])
def test_first_sighting_of_unconfirmed_close_is_ambiguous(task: Task | None) -> None:
    decision = run(None, task, observe(None, T0))
    assert decision == Decision(Outcome.AMBIGUOUS, None, None, (), REFETCH)


# -- task rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored_status", "observed_status"),
    [(OP, CL), (CL, OP), (OP, MG)],
)
def test_done_task_is_never_moved(stored_status: PRStatus, observed_status: PRStatus) -> None:
    # e.g. a second PR for a task that is already DONE.
    stored = stored_pr(stored_status, task_id=TASK_ID)
    decision = run(stored, Task(TASK_ID, DONE), observe(observed_status, T0 + OFFSET[NEW]))
    assert decision.outcome is Outcome.TRANSITIONED
    assert decision.pr is not None
    assert decision.pr.status is observed_status
    assert decision.task is None
    assert event_summary(decision) == [pr_event(stored_status, observed_status)]
    assert FollowUp.CLEANUP_WORKTREE not in decision.follow_ups


def test_first_sighting_does_not_move_done_task() -> None:
    decision = run(None, Task(TASK_ID, DONE), observe(OP, T0))
    assert decision.outcome is Outcome.CREATED
    assert decision.task is None
    assert event_summary(decision) == [pr_event(None, "OPEN")]


@pytest.mark.parametrize(
    ("status", "hand_set"),
    [(OP, IMPL), (OP, TODO), (OP, CANCELLED), (CL, REVIEW), (MG, REVIEW)],
)
def test_metadata_update_keeps_task_status_set_by_hand(
    status: PRStatus, hand_set: TaskStatus
) -> None:
    stored = stored_pr(status, task_id=TASK_ID)
    observation = observe(status, T0 + OFFSET[NEW])
    decision = run(stored, Task(TASK_ID, hand_set), observation)
    assert decision.outcome is Outcome.UPDATED
    assert decision.pr == from_observation(PR_ID, status, observation, TASK_ID)
    assert decision.task is None
    assert decision.events == ()


@dataclass(frozen=True)
class LinkCase:
    stored: PRStatus
    observed: PRStatus | None
    freshness: Freshness
    outcome: Outcome
    pr_status: PRStatus
    metadata: str  # "observed" or "stored"
    task_after: TaskStatus
    pr_events: tuple[tuple[str, str | None, str], ...]
    follow_ups: frozenset[FollowUp]


NEWLY_LINKED = {
    "stale": LinkCase(OP, OP, OLD, STALE, OP, "stored", REVIEW, (), NONE),
    "stale-closed": LinkCase(CL, OP, OLD, STALE, CL, "stored", CANCELLED, (), NONE),
    "repeat": LinkCase(OP, OP, EQ, UNCHANGED, OP, "stored", REVIEW, (), NONE),
    "ambiguous": LinkCase(OP, CL, EQ, AMBIGUOUS, OP, "stored", REVIEW, (), REFETCH),
    "terminal": LinkCase(MG, OP, NEW, TERMINAL, MG, "stored", DONE, (), CLEANUP),
    "update": LinkCase(OP, OP, NEW, UPDATED, OP, "observed", REVIEW, (), NONE),
    "transition": LinkCase(
        OP, MG, NEW, TRANSITIONED, MG, "observed", DONE, (pr_event("OPEN", "MERGED"),), CLEANUP
    ),
}


@pytest.mark.parametrize("case", list(NEWLY_LINKED.values()), ids=list(NEWLY_LINKED))
def test_newly_linked_task_is_linked_and_synced_whatever_the_verdict(case: LinkCase) -> None:
    # The shell passes the task the head branch names for a PR without a task yet.
    stored = stored_pr(case.stored, task_id=None)
    observation = observe(case.observed, T0 + OFFSET[case.freshness])
    decision = run(stored, Task(TASK_ID, TODO), observation)

    assert decision.outcome is case.outcome
    assert decision.pr is not None
    if case.metadata == "stored":
        assert decision.pr == dataclasses.replace(stored, task_id=TASK_ID)
    else:
        assert decision.pr == from_observation(PR_ID, case.pr_status, observation, TASK_ID)
    assert decision.task == Task(TASK_ID, case.task_after)
    assert event_summary(decision) == [
        *case.pr_events,
        task_event("TODO", case.task_after),
    ]
    assert all(e.task_id == TASK_ID for e in decision.events)
    assert decision.follow_ups == case.follow_ups


def test_newly_linked_task_already_at_mapped_status_only_links() -> None:
    stored = stored_pr(OP, task_id=None)
    decision = run(stored, Task(TASK_ID, REVIEW), observe(OP, T0 + OFFSET[OLD]))
    assert decision.pr == dataclasses.replace(stored, task_id=TASK_ID)
    assert decision.task is None
    assert decision.events == ()


@pytest.mark.parametrize("task_before", [CANCELLED, TODO, IMPL])
def test_reopen_moves_task_back_to_code_reviewing(task_before: TaskStatus) -> None:
    stored = stored_pr(CL, task_id=TASK_ID)
    decision = run(stored, Task(TASK_ID, task_before), observe(OP, T0 + OFFSET[NEW]))
    assert decision.outcome is Outcome.TRANSITIONED
    assert decision.task == Task(TASK_ID, REVIEW)
    assert event_summary(decision) == [
        pr_event("CLOSED", "OPEN"),
        task_event(task_before, "CODE_REVIEWING"),
    ]


def test_task_of_another_pr_is_not_touched() -> None:
    # The stored PR is linked to another task: a task handed in by mistake is ignored.
    stored = stored_pr(OP, task_id="task-other")
    decision = run(stored, Task(TASK_ID, IMPL), observe(MG, T0 + OFFSET[NEW]))
    assert decision.pr is not None
    assert decision.pr.task_id == "task-other"
    assert decision.task is None
    assert event_summary(decision) == [pr_event("OPEN", "MERGED")]


# -- decide_link -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "task_after", "follow_ups"),
    [(OP, REVIEW, NONE), (CL, CANCELLED, NONE), (MG, DONE, CLEANUP)],
)
def test_decide_link_links_and_syncs_task(
    status: PRStatus, task_after: TaskStatus, follow_ups: frozenset[FollowUp]
) -> None:
    pr = dataclasses.replace(stored_pr(status), last_delivery_id="old-delivery")
    decision = decide_link(pr, Task(TASK_ID, IMPL), now=NOW, source=Source.MANUAL)
    assert decision.outcome is Outcome.UPDATED
    assert decision.pr == dataclasses.replace(
        pr, task_id=TASK_ID, last_source=Source.MANUAL, last_delivery_id=None
    )
    assert decision.task == Task(TASK_ID, task_after)
    (event,) = decision.events
    assert event.payload == {
        "type": "task_status_change",
        "task_id": TASK_ID,
        "old_status": "IMPLEMENTING",
        "new_status": task_after.value,
        "pr_trigger": True,
        "timestamp": STAMP,
    }
    assert decision.follow_ups == follow_ups


def test_decide_link_to_task_at_mapped_status_emits_nothing() -> None:
    pr = stored_pr(OP)
    decision = decide_link(pr, Task(TASK_ID, REVIEW), now=NOW, source=Source.MANUAL)
    assert decision.outcome is Outcome.UPDATED
    assert decision.pr is not None
    assert decision.pr.task_id == TASK_ID
    assert decision.task is None
    assert decision.events == ()


def test_decide_link_does_not_move_done_task() -> None:
    decision = decide_link(stored_pr(OP), Task(TASK_ID, DONE), now=NOW, source=Source.MANUAL)
    assert decision.pr is not None
    assert decision.pr.task_id == TASK_ID
    assert decision.task is None
    assert decision.events == ()


def test_decide_link_again_is_unchanged() -> None:
    first = decide_link(stored_pr(CL), Task(TASK_ID, TODO), now=NOW, source=Source.MANUAL)
    assert first.pr is not None
    assert first.task is not None
    again = decide_link(first.pr, first.task, now=NOW, source=Source.MANUAL)
    assert again == Decision(Outcome.UNCHANGED, None, None)


def test_decide_link_moves_pr_to_another_task() -> None:
    pr = stored_pr(OP, task_id="task-old")
    decision = decide_link(pr, Task(TASK_ID, TODO), now=NOW, source=Source.MANUAL)
    assert decision.pr is not None
    assert decision.pr.task_id == TASK_ID
    assert decision.task == Task(TASK_ID, REVIEW)


# -- property tests ----------------------------------------------------------------------


def _fixture_snapshots() -> dict[str, Snapshot]:
    """The snapshot of every recorded PR-event delivery, by fixture name."""
    snapshots = {}
    for delivery in iter_deliveries(fixtures_root()):
        document = orjson.loads(delivery.body)
        snap = parse_delivery(delivery.guid, delivery.event, document).snapshot
        if snap is not None:
            snapshots[delivery.path.relative_to(fixtures_root()).as_posix()] = snap
    return snapshots


def _closed_review(updated_at: str) -> Snapshot:
    """A review event on a PR closed at ``updated_at``: a close it cannot confirm."""
    delivery = load_delivery(fixtures_root() / "pull_request_review" / "submitted.json")
    document = orjson.loads(delivery.body)
    document["pull_request"].update(state="closed", closed_at=updated_at, updated_at=updated_at)
    snap = parse_delivery(delivery.guid, delivery.event, document).snapshot
    assert snap is not None
    return snap


FIXTURE_SNAPSHOTS = list(_fixture_snapshots().values())
UNCONFIRMED = [_closed_review("2019-05-15T15:21:18Z"), _closed_review("2019-05-15T15:22:00Z")]
ALL_SNAPSHOTS = FIXTURE_SNAPSHOTS + UNCONFIRMED


def test_fixture_observations_cover_every_status() -> None:
    assert {s.status for s in FIXTURE_SNAPSHOTS} == {OP, CL, MG}
    assert {s.status for s in UNCONFIRMED} == {None}
    assert len({(s.repository, s.number) for s in ALL_SNAPSHOTS}) == 1


@dataclass
class State:
    """The stored rows, as the shell would hold them between decisions."""

    pr: PullRequest | None = None
    task: Task | None = None
    branch_names_task: bool = False  # the head branch names the task (shell looks it up)

    def task_for_decide(self) -> Task | None:
        if self.task is None:
            return None
        if self.pr is not None and self.pr.task_id == self.task.id:
            return self.task
        return self.task if self.branch_names_task else None

    def apply(self, decision: Decision) -> None:
        if decision.pr is not None:
            self.pr = decision.pr
        if decision.task is not None:
            self.task = decision.task


observations = st.builds(
    Observation,
    st.sampled_from(ALL_SNAPSHOTS),
    st.sampled_from(list(Source)),
    st.one_of(st.none(), st.uuids().map(str)),
)
operations = st.one_of(
    observations,
    st.just("link"),
    st.sampled_from(list(TaskStatus)),  # an operator sets the task status by hand
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    history=st.lists(operations, max_size=12),
    observation=observations,
    task_status=st.one_of(st.none(), st.sampled_from(list(TaskStatus))),
    branch_names_task=st.booleans(),
)
def test_applying_an_observation_twice_changes_nothing_the_second_time(
    history: list[Observation | str | TaskStatus],
    observation: Observation,
    task_status: TaskStatus | None,
    branch_names_task: bool,
) -> None:
    task = None if task_status is None else Task(TASK_ID, task_status)
    state = State(None, task, branch_names_task)
    for step in history:
        if isinstance(step, Observation):
            state.apply(run(state.pr, state.task_for_decide(), step))
        elif isinstance(step, TaskStatus):
            if state.task is not None:
                state.task = Task(state.task.id, step)
        elif state.pr is not None and state.task is not None:
            state.apply(decide_link(state.pr, state.task, now=NOW, source=Source.MANUAL))

    state.apply(run(state.pr, state.task_for_decide(), observation))
    pr_after_first = state.pr
    second = run(state.pr, state.task_for_decide(), observation)

    assert second.events == ()
    assert second.pr is None or second.pr == pr_after_first
    assert second.task is None
    assert FollowUp.CLEANUP_WORKTREE not in second.follow_ups


@st.composite
def true_histories(draw: st.DrawFn) -> list[Observation]:
    """Observations of one PR at strictly increasing times; nothing leaves MERGED."""
    statuses = draw(st.lists(st.sampled_from([OP, CL]), min_size=1, max_size=7))
    statuses += [MG] * draw(st.integers(0, 2))  # once merged, merged for good
    gaps = draw(st.lists(st.integers(1, 3600), min_size=len(statuses), max_size=len(statuses)))
    history = []
    at = T0
    for index, (status, gap) in enumerate(zip(statuses, gaps, strict=True)):
        at += timedelta(seconds=gap)
        source = draw(st.sampled_from([Source.MONITOR, Source.WORKER]))
        snap = snapshot(status, at, title=f"title {index}", head_sha=f"{index:040x}")
        history.append(Observation(snap, source, f"d-{index}"))
    return history


def _assert_chain(events: Sequence[EventDraft], first_old: str | None) -> None:
    previous = first_old
    for event in events:
        assert event.payload["old_status"] == previous
        assert event.payload["old_status"] != event.payload["new_status"]
        previous = event.payload["new_status"]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    data=st.data(),
    history=true_histories(),
    task_status=st.one_of(st.none(), st.sampled_from([TODO, IMPL, REVIEW, CANCELLED])),
)
def test_any_delivery_order_converges_on_the_newest_observation(
    data: st.DataObject, history: list[Observation], task_status: TaskStatus | None
) -> None:
    order = data.draw(st.permutations(history))
    newest = history[-1]
    task = None if task_status is None else Task(TASK_ID, task_status)

    pr: PullRequest | None = None
    events: list[EventDraft] = []
    for observation in order:
        decision = run(pr, task, observation)
        pr = decision.pr or pr
        task = decision.task or task
        events.extend(decision.events)

    assert pr is not None
    assert pr.status is newest.snapshot.status
    assert pr.github_updated_at == newest.snapshot.updated_at
    assert pr.title == newest.snapshot.title
    assert pr.head_sha == newest.snapshot.head_sha
    assert pr.id == NEW_PR_ID

    pr_events = [e for e in events if e.type == "pr_status_change"]
    assert pr_events
    _assert_chain(pr_events, None)
    assert pr_events[-1].payload["new_status"] == newest.snapshot.status

    task_events = [e for e in events if e.type == "task_status_change"]
    if task_status is None:
        assert task is None
        assert task_events == []
    else:
        assert task is not None
        assert pr.task_id == TASK_ID
        assert task.status is TASK_STATUS_FOR_PR[pr.status]
        _assert_chain(task_events, task_status)
