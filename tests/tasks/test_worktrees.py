"""Worktree clean-up against real git repositories and worktrees in temp directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webhook_service.tasks.worktrees import (
    CleanupError,
    CleanupResult,
    cleanup_worktree,
    is_within,
    worktree_exists,
)

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config; an identity for commits (the module inherits this)."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES"):
        monkeypatch.delenv(name, raising=False)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def registered(repo: Path) -> list[Path]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [
        Path(line.removeprefix("worktree ")).resolve()
        for line in out.splitlines()
        if line.startswith("worktree ")
    ]


def is_registered(repo: Path, path: Path) -> bool:
    return path.resolve() in registered(repo)


def exists(path: Path) -> bool:
    return path.exists()


def resolved(path: Path) -> str:
    return str(path.resolve())


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (not following symlinks), for "untouched" checks."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(directory).parts
    }


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "worktrees"
    root.mkdir()
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The main repository, outside the worktree root."""
    return make_repo(tmp_path / "repos" / "main")


def add_worktree(repo: Path, path: Path, branch: str | None = None) -> Path:
    if branch is None:
        git(repo, "worktree", "add", "-q", "--detach", str(path))
    else:
        git(repo, "worktree", "add", "-q", "-b", branch, str(path))
    return path


@pytest.fixture
def worktree(repo: Path, root: Path) -> Path:
    return add_worktree(repo, root / "task-1", "task-1")


def assert_removed(result: CleanupResult, repo: Path, path: Path) -> None:
    assert result.removed is True
    assert result.path == path.resolve()
    assert result.repository == repo
    assert not exists(path)
    assert not is_registered(repo, path)
    assert not (repo / ".git" / "worktrees" / path.name).exists()


# --- removal ---------------------------------------------------------------------------


async def test_clean_worktree_removed_pruned_and_branch_deleted(
    repo: Path, root: Path, worktree: Path
) -> None:
    assert is_registered(repo, worktree)
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch == "task-1"
    assert result.branch_deleted is True
    assert branches(repo) == {"main"}
    assert (repo / "README.md").read_text() == "hello\n"  # main checkout untouched


async def test_branch_kept_when_not_asked(repo: Path, root: Path, worktree: Path) -> None:
    result = await cleanup_worktree(str(worktree), root=root, delete_branch=False)
    assert_removed(result, repo, worktree)
    assert result.branch == "task-1"
    assert result.branch_deleted is False
    assert branches(repo) == {"main", "task-1"}


async def test_dirty_worktree_removed(repo: Path, root: Path, worktree: Path) -> None:
    (worktree / "README.md").write_text("modified\n")
    (worktree / "untracked.txt").write_text("new\n")
    (worktree / "staged.txt").write_text("staged\n")
    git(worktree, "add", "staged.txt")
    (worktree / "ignored-dir" / "deep").mkdir(parents=True)
    (worktree / "ignored-dir" / "deep" / "f").write_text("x")
    assert git(worktree, "status", "--porcelain").strip()
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch_deleted is True
    assert (repo / "README.md").read_text() == "hello\n"


async def test_locked_worktree_removed(repo: Path, root: Path, worktree: Path) -> None:
    git(repo, "worktree", "lock", "--reason", "on a removable disk", str(worktree))
    assert "locked" in git(repo, "worktree", "list", "--porcelain")
    (worktree / "dirty.txt").write_text("and dirty too\n")
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch_deleted is True


async def test_detached_worktree_has_no_branch(repo: Path, root: Path) -> None:
    path = add_worktree(repo, root / "detached")
    result = await cleanup_worktree(path, root=root, delete_branch=True)
    assert_removed(result, repo, path)
    assert result.branch is None
    assert result.branch_deleted is False
    assert branches(repo) == {"main"}


async def test_branch_checked_out_elsewhere_is_kept(repo: Path, root: Path, worktree: Path) -> None:
    other = root / "other"
    git(repo, "worktree", "add", "-q", "--force", str(other), "task-1")  # same branch twice
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch == "task-1"
    assert result.branch_deleted is False
    assert "task-1" in branches(repo)
    assert exists(other)
    assert is_registered(repo, other)


async def test_branch_checked_out_in_main_checkout_is_kept(
    repo: Path, root: Path, worktree: Path
) -> None:
    git(repo, "checkout", "-q", "--ignore-other-worktrees", "task-1")
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch_deleted is False
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "task-1"


async def test_unborn_branch_is_not_deleted(repo: Path, root: Path, worktree: Path) -> None:
    git(worktree, "checkout", "-q", "--orphan", "never-committed")
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)
    assert result.branch == "never-committed"
    assert result.branch_deleted is False
    assert branches(repo) == {"main", "task-1"}


async def test_worktree_of_bare_repository(tmp_path: Path, repo: Path, root: Path) -> None:
    bare = tmp_path / "repos" / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    path = root / "from-bare"
    git(bare, "worktree", "add", "-q", "-b", "feature", str(path), "main")
    result = await cleanup_worktree(path, root=root, delete_branch=True)
    assert result.removed is True
    assert result.repository == bare
    assert result.branch_deleted is True
    assert not exists(path)
    assert "feature" not in branches(bare)


async def test_path_with_spaces_and_symlinked_root(tmp_path: Path, repo: Path, root: Path) -> None:
    path = add_worktree(repo, root / "task with spaces", "spaced")
    link = tmp_path / "root-link"
    link.symlink_to(root, target_is_directory=True)
    # Both the root and the path are given through the symlink: resolved, it is inside.
    result = await cleanup_worktree(link / path.name, root=link, delete_branch=True)
    assert_removed(result, repo, path)
    assert result.path == path.resolve()


async def test_relative_path_is_relative_to_root(repo: Path, root: Path, worktree: Path) -> None:
    result = await cleanup_worktree("task-1", root=root, delete_branch=False)
    assert_removed(result, repo, worktree)


async def test_symlink_inside_root_to_worktree_inside_root(
    repo: Path, root: Path, worktree: Path
) -> None:
    alias = root / "alias"
    alias.symlink_to(worktree, target_is_directory=True)
    result = await cleanup_worktree(alias, root=root, delete_branch=False)
    assert_removed(result, repo, worktree)


async def test_repository_selecting_env_is_ignored(
    tmp_path: Path, repo: Path, root: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = make_repo(tmp_path / "repos" / "decoy")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    assert_removed(result, repo, worktree)
    assert branches(decoy) == {"main"}


# --- already gone ----------------------------------------------------------------------


async def test_missing_path_counts_as_done(root: Path) -> None:
    result = await cleanup_worktree(root / "never-existed", root=root, delete_branch=True)
    assert result == CleanupResult(
        path=(root / "never-existed").resolve(),
        removed=False,
        repository=None,
        branch=None,
        branch_deleted=False,
    )


async def test_manually_deleted_worktree_counts_as_done(
    repo: Path, root: Path, worktree: Path
) -> None:
    shutil.rmtree(worktree)
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert result.removed is False
    assert result.repository is None


async def test_second_cleanup_is_done(repo: Path, root: Path, worktree: Path) -> None:
    first = await cleanup_worktree(worktree, root=root, delete_branch=True)
    second = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert first.removed is True
    assert second.removed is False


async def test_dangling_symlink_inside_root_counts_as_done(root: Path) -> None:
    (root / "dangling").symlink_to(root / "gone", target_is_directory=True)
    result = await cleanup_worktree(root / "dangling", root=root, delete_branch=True)
    assert result.removed is False
    assert result.path == (root / "gone").resolve()


# --- refusals --------------------------------------------------------------------------


async def refused(path: str | Path, root: Path) -> CleanupError:
    with pytest.raises(CleanupError) as info:
        await cleanup_worktree(path, root=root, delete_branch=True)
    assert info.value.retryable is False
    return info.value


async def test_dotdot_escape_refused(tmp_path: Path, repo: Path, root: Path) -> None:
    outside = add_worktree(repo, tmp_path / "outside", "outside")
    (outside / "work.txt").write_text("keep me\n")
    before = snapshot(outside)
    sneaky = f"{root}/../outside"
    error = await refused(sneaky, root)
    message = str(error)
    assert sneaky in message
    assert "WORKTREE_ROOT" in message
    assert resolved(root) in message
    assert resolved(outside) in message
    assert snapshot(outside) == before
    assert is_registered(repo, outside)
    assert "outside" in branches(repo)
    # The same through a relative path.
    error = await refused("../outside", root)
    assert "WORKTREE_ROOT" in str(error)


async def test_symlink_escape_refused(tmp_path: Path, repo: Path, root: Path) -> None:
    target = add_worktree(repo, tmp_path / "target", "target")
    (target / "work.txt").write_text("keep me\n")
    before = snapshot(target)
    link = root / "innocent"
    link.symlink_to(target, target_is_directory=True)
    error = await refused(link, root)
    assert "WORKTREE_ROOT" in str(error)
    assert str(link) in str(error)
    assert resolved(target) in str(error)
    assert snapshot(target) == before
    assert link.is_symlink()
    assert is_registered(repo, target)
    assert "target" in branches(repo)


async def test_symlinked_parent_escape_refused(tmp_path: Path, repo: Path, root: Path) -> None:
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    target = add_worktree(repo, outside_dir / "wt", "wt")
    (root / "dir-link").symlink_to(outside_dir, target_is_directory=True)
    await refused(root / "dir-link" / "wt", root)
    assert exists(target)


async def test_root_itself_refused(repo: Path, root: Path, worktree: Path) -> None:
    for spelling in (root, str(root), f"{root}/", f"{root}/task-1/..", "", "."):
        error = await refused(spelling, root)
        assert "WORKTREE_ROOT" in str(error)
        assert exists(worktree)


async def test_root_that_is_itself_a_worktree_refused(tmp_path: Path, repo: Path) -> None:
    root = add_worktree(repo, tmp_path / "root-worktree", "rooted")
    await refused(root, root)
    assert exists(root)
    assert "rooted" in branches(repo)


async def test_main_checkout_inside_root_refused(root: Path) -> None:
    main = make_repo(root / "main-checkout")
    (main / "untracked.txt").write_text("precious\n")
    add_worktree(main, root / "its-worktree", "wt")
    before = snapshot(main)
    error = await refused(main, root)
    assert "not a linked git worktree" in str(error)
    assert snapshot(main) == before
    assert (main / ".git").is_dir()
    assert branches(main) == {"main", "wt"}


async def test_bare_repository_inside_root_refused(tmp_path: Path, repo: Path, root: Path) -> None:
    bare = root / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    await refused(bare, root)
    assert (bare / "HEAD").exists()


async def test_plain_directory_refused(root: Path) -> None:
    plain = root / "plain"
    plain.mkdir()
    (plain / "file.txt").write_text("data\n")
    error = await refused(plain, root)
    assert str(plain) in str(error)
    assert (plain / "file.txt").read_text() == "data\n"


async def test_plain_file_refused(root: Path) -> None:
    (root / "file").write_text("data\n")
    await refused(root / "file", root)
    assert (root / "file").read_text() == "data\n"


async def test_plain_directory_inside_a_checkout_refused(tmp_path: Path) -> None:
    """The root lives inside a repository's working tree: git would find that repository
    from any directory under the root, so a plain directory must not be mistaken for it."""
    outer = make_repo(tmp_path / "outer")
    root = outer / "worktrees"
    plain = root / "plain"
    plain.mkdir(parents=True)
    (plain / "keep.txt").write_text("keep\n")
    await refused(plain, root)
    assert (plain / "keep.txt").exists()
    assert (outer / "README.md").exists()


async def test_subdirectory_of_worktree_refused(repo: Path, root: Path, worktree: Path) -> None:
    sub = worktree / "sub"
    sub.mkdir()
    await refused(sub, root)
    assert exists(worktree)
    assert exists(sub)


async def test_copy_of_worktree_refused(repo: Path, root: Path, worktree: Path) -> None:
    """A copy's .git still points at the original's gitdir; the original must survive."""
    copy = root / "copy"
    shutil.copytree(worktree, copy)
    error = await refused(copy, root)
    assert "does not list it" in str(error)
    assert exists(worktree)
    assert exists(copy)
    assert is_registered(repo, worktree)


async def test_submodule_checkout_refused(tmp_path: Path, repo: Path, root: Path) -> None:
    superproject = make_repo(root / "super")
    git(
        superproject,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(repo),
        "sub",
    )
    assert (superproject / "sub" / ".git").is_file()
    await refused(superproject / "sub", root)
    assert (superproject / "sub" / "README.md").exists()


# --- transient failures ----------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def test_git_failure_is_retryable_with_stderr(
    tmp_path: Path, repo: Path, root: Path, worktree: Path
) -> None:
    fake = script(
        tmp_path / "git-fails-remove",
        'case "$*" in *"worktree remove"*) '
        "echo \"fatal: Unable to create 'index.lock': File exists.\" >&2; exit 128;; esac\n"
        f'exec "{GIT}" "$@"\n',
    )
    with pytest.raises(CleanupError) as info:
        await cleanup_worktree(worktree, root=root, delete_branch=True, git=str(fake))
    assert info.value.retryable is True
    assert "index.lock" in str(info.value)
    assert "worktree remove" in str(info.value)
    assert exists(worktree)
    # The next attempt, with a working git, succeeds.
    result = await cleanup_worktree(worktree, root=root, delete_branch=True)
    assert_removed(result, repo, worktree)


async def test_timeout_kills_git_and_is_retryable(
    tmp_path: Path, root: Path, worktree: Path
) -> None:
    pid_file = tmp_path / "pid"
    fake = script(tmp_path / "git-hangs", f'echo $$ > "{pid_file}"\nexec sleep 30\n')
    started = time.monotonic()
    with pytest.raises(CleanupError) as info:
        await cleanup_worktree(worktree, root=root, delete_branch=True, git=str(fake), timeout=0.5)
    assert time.monotonic() - started < 10
    assert info.value.retryable is True
    assert "timed out" in str(info.value)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert exists(worktree)


async def test_missing_git_binary_is_retryable(tmp_path: Path, root: Path, worktree: Path) -> None:
    with pytest.raises(CleanupError) as info:
        await cleanup_worktree(
            worktree, root=root, delete_branch=True, git=str(tmp_path / "no-such-git")
        )
    assert info.value.retryable is True
    assert exists(worktree)


# --- is_within / worktree_exists -------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Path]:
    """root/ (with inner/, a link out and a link in) and a sibling outside/."""
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root-sibling").mkdir()
    (root / "out-link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "in-link").symlink_to(root / "inner", target_is_directory=True)
    (tmp_path / "root-link").symlink_to(root, target_is_directory=True)
    yield tmp_path


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("root/inner", "root", True),
        ("root/inner/deeper/not-yet", "root", True),
        ("root/missing", "root", True),
        ("root/in-link", "root", True),
        ("root/inner/../inner", "root", True),
        ("root-link/inner", "root", True),
        ("root/inner", "root-link", True),
        ("root/inner/", "root/", True),
        ("root", "root", False),
        ("root/", "root", False),
        ("root/inner/..", "root", False),
        ("root-link", "root", False),
        ("root/..", "root", False),
        ("root/../outside", "root", False),
        ("root/inner/../../outside", "root", False),
        ("root/out-link", "root", False),
        ("root/out-link/x", "root", False),
        ("outside", "root", False),
        ("root-sibling", "root", False),
        ("root-sibling/x", "root", False),
        ("/", "root", False),
    ],
)
def test_is_within(layout: Path, path: str, root: str, expected: bool) -> None:
    assert is_within(layout / path, layout / root) is expected


def test_is_within_relative_path_is_relative_to_root(layout: Path) -> None:
    assert is_within(Path("inner"), layout / "root") is True
    assert is_within(Path("../outside"), layout / "root") is False
    assert is_within(Path("."), layout / "root") is False


async def test_worktree_exists(tmp_path: Path, repo: Path, root: Path, worktree: Path) -> None:
    detached = add_worktree(repo, root / "detached")
    outside = add_worktree(repo, tmp_path / "outside", "outside")
    (root / "out-link").symlink_to(outside, target_is_directory=True)
    (root / "plain").mkdir()
    (root / "fake").mkdir()
    (root / "fake" / ".git").write_text("gitdir: /nonexistent/worktrees/fake\n")
    main_inside = make_repo(root / "main-inside")

    assert await worktree_exists(worktree, root=root) is True
    assert await worktree_exists(str(worktree), root=root) is True
    assert await worktree_exists("task-1", root=root) is True
    assert await worktree_exists(detached, root=root) is True
    assert await worktree_exists(root / "missing", root=root) is False
    assert await worktree_exists(root / "plain", root=root) is False
    assert await worktree_exists(root / "fake", root=root) is False
    assert await worktree_exists(main_inside, root=root) is False
    assert await worktree_exists(root, root=root) is False
    assert await worktree_exists(outside, root=root) is False
    assert await worktree_exists(root / "out-link", root=root) is False
    assert await worktree_exists(worktree / "sub", root=root) is False

    await cleanup_worktree(worktree, root=root, delete_branch=False)
    assert await worktree_exists(worktree, root=root) is False
