"""Talking to GitHub: the REST and GraphQL client with its rate-limit budgets, App
installations, and registering an App (the manifest flow)."""
