"""Removing a DONE task's git worktree.

One operation, :func:`cleanup_worktree`: the job (its table, retries and scheduling
live elsewhere) calls it and stores :class:`CleanupError`'s message as the job's error.

Safety rules, checked before git is asked to do anything:

* The path and ``WORKTREE_ROOT`` are both resolved first (symlinks and ``..``); the
  path must be strictly inside the root. A relative path is taken relative to the root.
* The path must be a *linked* worktree: a directory whose ``.git`` is a file pointing
  at a worktree administrative directory, and which its repository's
  ``git worktree list`` registers under that path. A main checkout, a bare
  repository, a subdirectory of a worktree, a submodule, a copy of a worktree or a
  plain directory is refused; nothing is deleted except by ``git worktree remove``.
* A path that does not exist counts as done.

Git runs without a shell, with argv lists, ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C``,
and without the caller's repository-selecting ``GIT_*`` variables (``GIT_DIR``,
``GIT_WORK_TREE``...), which would otherwise point every command at another repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["CleanupError", "CleanupResult", "cleanup_worktree", "is_within", "worktree_exists"]

# Variables that make git use another repository, work tree or index than the one
# found from ``-C <dir>`` (from ``git rev-parse --local-env-vars``, minus config ones).
_REPOSITORY_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_PREFIX",
        "GIT_NAMESPACE",
        "GIT_GRAFT_FILE",
        "GIT_SHALLOW_FILE",
        "GIT_REPLACE_REF_BASE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    }
)
_STDERR_LIMIT = 2000
_HEADS = "refs/heads/"


class CleanupError(Exception):
    """The worktree could not be removed; the message says why (stored as the job's error).

    ``retryable`` is False for refusals (outside the root, not a linked worktree...),
    which no retry can fix, and True for transient failures (git failed or timed out).
    """

    def __init__(self, message: str, *, retryable: bool, leftover: Leftover | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        #: Set when the worktree itself was removed and only the repository's
        #: bookkeeping (prune, branch deletion) failed: what a retry must finish, since
        #: the worktree that led to the repository is gone.
        self.leftover = leftover


@dataclass(frozen=True, slots=True)
class Leftover:
    repository: Path  # the main repository of the removed worktree
    branch: str | None  # its branch, to delete; None when no deletion is asked


@dataclass(frozen=True, slots=True)
class CleanupResult:
    path: Path  # the resolved worktree path
    removed: bool  # False when it was already gone ("counts as done")
    repository: Path | None  # the main repository whose worktree list was pruned
    branch: str | None  # the branch the worktree had checked out (None if detached/unknown)
    branch_deleted: bool


@dataclass(frozen=True, slots=True)
class _Worktree:
    path: Path
    branch: str | None  # short name, without refs/heads/
    bare: bool


def _resolve(path: str | Path, root: Path) -> tuple[Path, Path]:
    resolved_root = root.resolve(strict=False)
    # An absolute path replaces the root; a relative one is relative to it.
    return (resolved_root / path).resolve(strict=False), resolved_root


def _strictly_inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` is strictly inside ``root`` once both are resolved.

    Symlinks and ``..`` are resolved (``Path.resolve(strict=False)``) on both; the root
    itself is not within the root. A relative ``path`` is taken relative to ``root``.
    """
    resolved, resolved_root = _resolve(path, root)
    return _strictly_inside(resolved, resolved_root)


def _admin_dir(path: Path) -> Path | None:
    """The worktree administrative directory ``path/.git`` points at, if it is one.

    A linked worktree's ``.git`` is a file ``gitdir: <repo>/.git/worktrees/<name>``
    and that directory holds a ``commondir`` file; a main checkout's ``.git`` is a
    directory and a submodule's points at a directory without ``commondir``.
    """
    dot_git = path / ".git"
    if dot_git.is_symlink() or not dot_git.is_file():
        return None
    try:
        content = dot_git.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    first = content.splitlines()[0] if content else ""
    if not first.startswith("gitdir: "):
        return None
    admin = path / first.removeprefix("gitdir: ")  # relative means relative to the worktree
    if not admin.is_dir() or not (admin / "commondir").is_file():
        return None
    return admin


def _exists_sync(path: str | Path, root: Path) -> bool:
    resolved, resolved_root = _resolve(path, root)
    if not _strictly_inside(resolved, resolved_root):
        return False
    return resolved.is_dir() and _admin_dir(resolved) is not None


async def worktree_exists(path: str | Path, *, root: Path) -> bool:
    """Whether ``path`` is inside ``root`` (resolved) and is a linked git worktree.

    For level-triggered checks: true when the directory exists and has a ``.git``
    file pointing at a worktree gitdir. A path outside the root is never ours: False.
    """
    return await asyncio.to_thread(_exists_sync, path, root)


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    return env


def _trim(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    if len(text) > _STDERR_LIMIT:
        text = text[:_STDERR_LIMIT] + "..."
    return text


class _Git:
    """Runs git commands against one overall deadline."""

    def __init__(self, git: str, timeout: float) -> None:
        self._git = git
        self._timeout = timeout
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._env = _git_env()

    async def run(self, *args: str) -> tuple[int, bytes, bytes]:
        """(returncode, stdout, stderr); raises CleanupError on timeout or if git cannot start."""
        command = " ".join(("git", *args))
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise CleanupError(
                f"timed out after {self._timeout:g} s before `{command}`", retryable=True
            )
        try:
            process = await asyncio.create_subprocess_exec(
                self._git,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
            )
        except OSError as exc:
            raise CleanupError(f"could not run {self._git!r}: {exc}", retryable=True) from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), remaining)
        except TimeoutError:
            raise CleanupError(
                f"timed out after {self._timeout:g} s running `{command}`", retryable=True
            ) from None
        finally:
            if process.returncode is None:  # timed out or cancelled: do not leave it running
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode, stdout, stderr

    async def check(self, *args: str) -> bytes:
        """stdout of a command that must succeed; CleanupError(retryable) with stderr if not."""
        code, stdout, stderr = await self.run(*args)
        if code != 0:
            detail = _trim(stderr) or f"exit status {code}"
            raise CleanupError(f"`git {' '.join(args)}` failed: {detail}", retryable=True)
        return stdout


def _parse_worktree_list(output: bytes) -> list[_Worktree]:
    """``git worktree list --porcelain -z``: NUL-terminated fields, entries end with NUL NUL."""
    entries: list[_Worktree] = []
    path: Path | None = None
    branch: str | None = None
    bare = False
    for raw in output.split(b"\0"):
        field = os.fsdecode(raw)
        if not field:  # end of an entry
            if path is not None:
                entries.append(_Worktree(path=path, branch=branch, bare=bare))
            path, branch, bare = None, None, False
        elif field.startswith("worktree "):
            path = Path(field.removeprefix("worktree "))
        elif field.startswith("branch "):
            ref = field.removeprefix("branch ")
            branch = ref.removeprefix(_HEADS) if ref.startswith(_HEADS) else None
        elif field == "bare":
            bare = True
    if path is not None:
        entries.append(_Worktree(path=path, branch=branch, bare=bare))
    return entries


def _position(worktrees: list[_Worktree], path: Path) -> int | None:
    """Index of ``path`` (resolved) in ``git worktree list``; 0 is the main worktree."""
    for index, worktree in enumerate(worktrees):
        if worktree.path.resolve(strict=False) == path:
            return index
    return None


async def cleanup_worktree(
    path: str | Path,
    *,
    root: Path,
    delete_branch: bool,
    git: str = "git",
    # The job's API takes a bound: it covers several git commands and kills them on expiry.
    timeout: float = 60.0,  # noqa: ASYNC109
) -> CleanupResult:
    """Remove the linked worktree at ``path`` (``git worktree remove -f -f``), prune its
    repository's worktree list, and delete its local branch if ``delete_branch``.

    Raises :class:`CleanupError`: not retryable for refusals (outside ``root``, not a
    linked worktree), retryable when git fails or ``timeout`` (for the whole
    operation) runs out. A path that no longer exists is done: ``removed=False``.
    """
    resolved, resolved_root = await _inside_root(path, root)
    if not await asyncio.to_thread(os.path.lexists, resolved):
        logger.info("worktree %s is already gone", resolved)
        return CleanupResult(
            path=resolved, removed=False, repository=None, branch=None, branch_deleted=False
        )
    if not await asyncio.to_thread(_exists_sync, resolved, resolved_root):
        raise CleanupError(
            f"refusing to remove {resolved}: it is not a linked git worktree (no .git file "
            "pointing at a worktree gitdir; main checkouts and plain directories are never "
            "removed)",
            retryable=False,
        )
    runner = _Git(git, timeout)
    repository, branch = await _owner(runner, resolved)

    # --force twice: a dirty worktree needs one, a locked one (`git worktree lock`) two.
    await runner.check(
        "-C", str(repository), "worktree", "remove", "--force", "--force", "--", str(resolved)
    )
    logger.info("removed worktree %s of %s", resolved, repository)
    leftover = Leftover(repository, branch if delete_branch else None)
    try:
        branch_deleted = await _finish(runner, leftover)
    except CleanupError as exc:
        raise CleanupError(str(exc), retryable=exc.retryable, leftover=leftover) from exc
    return CleanupResult(
        path=resolved,
        removed=True,
        repository=repository,
        branch=branch,
        branch_deleted=branch_deleted,
    )


async def _inside_root(path: str | Path, root: Path) -> tuple[Path, Path]:
    """``path`` and ``root`` resolved; CleanupError (not retryable) unless ``path`` is
    strictly inside ``root``: WORKTREE_ROOT is the one place clean-up may touch."""
    resolved, resolved_root = await asyncio.to_thread(_resolve, path, root)
    if resolved == resolved_root:
        raise CleanupError(
            f"refusing to remove worktree {str(path)!r}: it is WORKTREE_ROOT "
            f"({resolved_root}) itself",
            retryable=False,
        )
    if not _strictly_inside(resolved, resolved_root):
        raise CleanupError(
            f"refusing to remove worktree {str(path)!r}: it resolves to {resolved}, "
            f"which is outside WORKTREE_ROOT ({resolved_root})",
            retryable=False,
        )
    return resolved, resolved_root


async def _owner(runner: _Git, resolved: Path) -> tuple[Path, str | None]:
    """The main working tree of the repository that lists ``resolved`` as a linked
    worktree, and the worktree's branch; CleanupError (not retryable) for a main
    working tree or a worktree its repository does not list."""
    worktrees = _parse_worktree_list(
        await runner.check("-C", str(resolved), "worktree", "list", "--porcelain", "-z")
    )
    if not worktrees:
        raise CleanupError(f"`git worktree list` in {resolved} listed nothing", retryable=True)
    main = worktrees[0]
    position = await asyncio.to_thread(_position, worktrees, resolved)
    if position == 0:
        raise CleanupError(
            f"refusing to remove {resolved}: it is a repository's main working tree",
            retryable=False,
        )
    if position is None:
        raise CleanupError(
            f"refusing to remove {resolved}: its repository {main.path} does not list it as "
            "a worktree (moved or copied? `git worktree repair` fixes a moved one)",
            retryable=False,
        )
    return main.path, worktrees[position].branch


async def finish_removal(
    leftover: Leftover,
    *,
    git: str = "git",
    timeout: float = 60.0,  # noqa: ASYNC109
) -> bool:
    """What is left after a worktree was removed: prune its repository's worktree list
    and delete its branch (if ``leftover.branch``). True when the branch was deleted.
    Raises :class:`CleanupError` (retryable, with the same ``leftover``) when git fails."""
    try:
        return await _finish(_Git(git, timeout), leftover)
    except CleanupError as exc:
        raise CleanupError(str(exc), retryable=exc.retryable, leftover=leftover) from exc


async def _finish(runner: _Git, leftover: Leftover) -> bool:
    await runner.check("-C", str(leftover.repository), "worktree", "prune")
    if leftover.branch is None:
        return False
    return await _delete_branch(runner, leftover.repository, leftover.branch)


async def _delete_branch(runner: _Git, repository: Path, branch: str) -> bool:
    """``git branch -D``; False (no error) when the branch is missing or checked out elsewhere."""
    code, _, _ = await runner.run(
        "-C", str(repository), "show-ref", "--verify", "--quiet", _HEADS + branch
    )
    if code != 0:
        logger.info("branch %s does not exist in %s; nothing to delete", branch, repository)
        return False
    code, _, stderr = await runner.run("-C", str(repository), "branch", "-D", "--", branch)
    if code == 0:
        logger.info("deleted branch %s in %s", branch, repository)
        return True
    message = _trim(stderr)
    # LC_ALL=C keeps git's messages in English.
    if "checked out at" in message or "not found" in message:
        logger.warning("kept branch %s in %s: %s", branch, repository, message)
        return False
    raise CleanupError(
        f"removed worktree, but `git branch -D {branch}` in {repository} failed: "
        f"{message or f'exit status {code}'}",
        retryable=True,
    )
