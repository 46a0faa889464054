"""The processes a waiting submitter lives for, and handing a stop signal down to them.

A workflow runs the submitter under the rule's shell: Snakemake -> shell -> submitter. Snakemake,
stopped by a signal sent to it alone (`kill -INT <pid>`, a process manager), waits for its rules'
processes without signalling them, so their Slurm jobs would run on. Two halves close that gap:
`forward_stop_signals()` (installed by the workflow) hands SIGINT/SIGTERM/SIGHUP on to every
descendant, as a terminal's Ctrl-C does for its process group; and `Lifeline` lets the submitter
notice that its parent or grandparent is gone (Snakemake killed with SIGKILL), so it cancels its
job rather than outlive the run that wanted it. Linux reads /proc; elsewhere only the parent's
pid is watched and nothing is forwarded.
"""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of `pid` from /proc, or None if it is gone (a
    zombie, exited but not yet reaped by its parent, is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


class Lifeline:
    """This process's parent and grandparent as they were at construction; `gone()` names the
    first one that has exited since (a reused pid is told apart by its start time)."""

    def __init__(self) -> None:
        self.parent = os.getppid()
        self.watched: list[tuple[int, int | None]] = []
        pid = self.parent
        for _ in range(2):
            if pid <= 1:
                break
            stat = _stat(pid)
            self.watched.append((pid, stat[1] if stat else None))
            if stat is None:
                break
            pid = stat[0]

    def gone(self) -> str:
        """ "" while everyone watched lives, else which process is gone."""
        if os.getppid() != self.parent:
            return f"parent process {self.parent} exited"
        for pid, started in self.watched:
            if started is None:
                continue
            stat = _stat(pid)
            if stat is None or stat[1] != started:
                return f"process {pid}, which started this one, exited"
        return ""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), from /proc; [] where there is no /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                children[stat[0]].append(int(name))
    found, todo = [], list(children[pid])
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo += children[child]
    return found


def forward_stop_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> None:
    """On each of `signals`, send it to every descendant of this process, then do what this
    process did before (Snakemake: KeyboardInterrupt for SIGINT, its own SIGTERM handler)."""
    for sig in signals:
        try:
            previous = signal.getsignal(sig)
            signal.signal(sig, _forwarder(previous))
        except (ValueError, OSError):  # not the main thread, or no such signal here
            continue


def _forwarder(previous: Any):
    def forward(signum: int, frame: Any) -> None:
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signum)
            except OSError:  # already gone
                pass
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return forward
