"""For the operator: the dashboard, /metrics, logging, and periodic background work."""
