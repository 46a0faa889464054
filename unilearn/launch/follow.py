"""Follow a job's log files while it runs (like `tail -f`), and read a log's last lines."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TextIO


class LogFollower:
    """Copies what was appended to each file since the last `pump()` into its stream.

    Files may not exist yet (the job is pending) and may be appended to after a requeue.
    """

    def __init__(self, targets: dict[os.PathLike, TextIO]) -> None:
        self._targets = {Path(p): stream for p, stream in targets.items()}
        self._offsets = {p: 0 for p in self._targets}

    def pump(self) -> None:
        for path, stream in self._targets.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[path])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            if chunk:
                self._offsets[path] += len(chunk)
                stream.write(chunk.decode("utf-8", errors="replace"))
                stream.flush()


def tail(path: os.PathLike, n_lines: int) -> str:
    """The last `n_lines` lines of a text file ("" when it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=n_lines))
    except FileNotFoundError:
        return ""
