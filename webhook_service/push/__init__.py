"""Telling dashboards: the outbox that emits committed events, and the Socket.IO stream."""
