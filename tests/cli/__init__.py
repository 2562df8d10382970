"""Tests of webhook_service.cli, one module per cli module, run as a user runs them."""
