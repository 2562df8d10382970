"""What happens to tasks: opening PRs for them, and cleaning up their git worktrees."""
