"""Real git repositories for the clean-up tests: a ``main`` checkout under a worktree
root, and git run with a fixed identity and no user configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str, cwd: Path) -> str:
    """``git *args`` in ``cwd``; its output (a failure raises)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout


def worktree_root(tmp_path: Path) -> Path:
    """``tmp_path/worktrees``, holding ``main``: a repository with one commit."""
    root = tmp_path / "worktrees"
    (root / "main").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=root / "main")
    git("commit", "-q", "--allow-empty", "-m", "init", cwd=root / "main")
    return root
