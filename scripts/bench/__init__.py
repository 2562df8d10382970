"""The benchmarks' shared harness, one concept per module: ``report`` (options, tables,
exit status), ``servers`` (servers under test, RSS, CPU), ``scratch_db``, ``deliveries``
(signed workloads, stored-state check), ``load`` (wrk + ``replay.lua``), ``clients``
(Socket.IO readers, stuck websockets), ``push``, ``poll`` and ``poll_child``. The
scripts import it as ``bench`` (``scripts/`` is ``sys.path[0]`` when a script runs)."""
