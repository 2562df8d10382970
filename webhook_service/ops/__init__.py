"""For the operator: the dashboard, ``/metrics`` and logging."""
