"""Run the shipped fake GitHub on its own, to point the service (or anything else) at:

    python -m webhook_service.testing --token dev-token --repository octo/demo --pulls 3

It prints its base URL on the first line of standard output (for ``GITHUB_API_URL``),
then serves until interrupted (Ctrl-C or SIGTERM). Every repository gets ``--pulls``
open pull requests with head branches ``feature-1``, ``feature-2``, ...; a task's PR can
be opened on any other branch (the fake accepts every head).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from webhook_service.testing.fake_github import FakeGitHub


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webhook_service.testing",
        description="Serve the fake GitHub REST API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        help="accept this token, as a personal access token (repeatable)",
    )
    parser.add_argument(
        "--repository",
        action="append",
        default=[],
        metavar="OWNER/NAME",
        help="create this repository (repeatable)",
    )
    parser.add_argument("--pulls", type=int, default=0, help="open PRs in each repository")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give at least one --token (the service's GITHUB_TOKEN)")
    try:
        return asyncio.run(_serve(args.port, args.token, args.repository, args.pulls))
    except OSError as exc:
        print(f"fake GitHub: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"fake GitHub: {exc}", file=sys.stderr)
        return 2


async def _serve(port: int, tokens: list[str], repositories: list[str], pulls: int) -> int:
    github = FakeGitHub()
    for token in tokens:
        github.add_token(token)
    for repository in repositories:
        github.add_repository(repository)
        for _ in range(pulls):
            github.add_pull(repository)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await github.start(port)
    try:
        print(github.url, flush=True)
        await stop.wait()
    finally:
        await github.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
