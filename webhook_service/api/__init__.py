"""The HTTP API: pull requests, tasks, stats and health, and how they are shown as JSON."""
