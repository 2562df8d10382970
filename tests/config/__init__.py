"""Tests of webhook_service.config, one module per config module."""
