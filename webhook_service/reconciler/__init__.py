"""The shell around :func:`webhook_service.core.rules.decide`: load, decide, write, hand on.

Work arrives as :class:`Job` values (a verified webhook delivery, or a bare observation
from the poller or an operator) and is applied in batches: whatever is waiting when a
transaction starts goes into that transaction (group commit). A batch costs one round
trip per statement kind, however many deliveries it carries, and one durable commit.

After the commit, stored events go to the ``on_commit`` callback (the outbox
dispatcher), and each job's future is resolved with its outcome.

- :mod:`.jobs`: what goes in and comes out (Job, Result);
- :mod:`.batching`: the Reconciler, its queue and workers (group commit);
- :mod:`.applying`: one batch inside its transaction (load, decide, write);
- :mod:`.edits`: an operator's link and task edits, each its own transaction;
- :mod:`.handoff`: after the commit (settling futures, logging changes).
"""

from webhook_service.reconciler.batching import Reconciler
from webhook_service.reconciler.jobs import Clock, DeliveryStatus, Job, Result

__all__ = ["Clock", "DeliveryStatus", "Job", "Reconciler", "Result"]
