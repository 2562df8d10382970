"""The poller: what it asks GitHub each cycle (discovery) and how it feeds the reconciler."""
