"""The store's commands as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_serve_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "webhook_service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert "WEBHOOK_SECRET and API_TOKEN must be set" in result.stderr
