"""Real write failures for tests: a child process whose files may not grow past a limit.

RLIMIT_FSIZE makes the kernel refuse a write past `limit` bytes with EFBIG (SQLite reports
"disk I/O error"), as a full disk refuses one; SIGXFSZ, which would kill the child first, is
ignored. The hard limit stays unlimited, so a test may lift the limit of a running child
(`resource.prlimit`), as an operator frees space.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def small_files(limit: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: the child's files may not grow past `limit` bytes."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limit_files


def goodwill_limited(limit: int | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`goodwill ARGS` in a child process whose files may not grow past `limit` bytes (None:
    no limit)."""
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        preexec_fn=None if limit is None else small_files(limit),
    )
