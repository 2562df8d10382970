"""The decision and the values it decides on: pure, no I/O (tests/test_layers.py keeps it so)."""
