"""The benchmarks' shared harness. Each ``scripts/bench_*.py`` states its workload,
baseline and targets; the plumbing lives here, one concept per module:

- ``report``: errors, logging, percentiles, tables, verdicts, JSON, the exit status;
- ``servers``: servers under test on free loopback ports (``KINDS``), RSS and CPU;
- ``scratch_db``: a PostgreSQL database created and dropped, or a SQLite file;
- ``deliveries``: realistic signed ``pull_request`` workloads and the database checks;
- ``load``: wrk replaying a workload exactly once (``replay.lua``);
- ``clients``: Socket.IO readers (a child process) and stuck raw websockets;
- ``poll``, ``poll_child``: the poller benchmark's fake, phases and poller process.

Nothing happens at import time; the scripts import it as ``bench`` (``scripts/`` is
``sys.path[0]`` when a script runs).
"""
