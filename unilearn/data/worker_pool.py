"""A process pool that survives its workers dying: `map_surviving_crashes(fn, tasks, ...)` yields
`(task, fn(task))` for every task, in completion order, even when a task kills its worker (a
decoder segfault, the OOM killer).

When a worker dies, every task in flight with it is a suspect: each is re-run alone in a fresh
one-worker pool, so the one that kills its worker gets `crashed(task)` as its result and the
others their real results; the remaining tasks then go on in a new pool. A pool whose workers
cannot start at all raises `RuntimeError` (a broken environment, not a bad task). Workers are
spawned, never forked: the parent may hold OpenCV/torch threads that a fork would copy in a
broken state. `fn` must be picklable (a module-level function or a `functools.partial` of one).

How many workers a data stage starts by default (`--workers` of `unilearn manifest`, `preprocess`
and `doctor`): `add_workers_argument`, the CPUs this job may use.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def map_surviving_crashes(
    fn: Callable[[Task], Result],
    tasks: Sequence[Task],
    workers: int,
    *,
    crashed: Callable[[Task], Result],
    initializer: Callable[[], None] | None = None,
    name: str = "worker",
) -> Iterator[tuple[Task, Result]]:
    """`(task, fn(task))` for every task over `workers` processes (at most 2 x workers in
    flight); a task whose worker dies under it gives `(task, crashed(task))`. `name` says whose
    workers they are in the error raised when workers die on start."""
    ctx = multiprocessing.get_context("spawn")
    queue = list(reversed(tasks))
    suspects: list[Task] = []
    while queue or suspects:
        if suspects:
            # A worker died while these were in flight: run each alone, so the one that kills its
            # worker gets `crashed` and the others their results.
            task = suspects.pop()
            with cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=initializer) as solo:
                try:
                    yield task, solo.submit(fn, task).result()
                except cf.process.BrokenProcessPool:
                    _check_workers_start(ctx, name)
                    yield task, crashed(task)
            continue
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer) as pool:
            inflight: dict[cf.Future, Task] = {}
            broken = False
            while (queue or inflight) and not broken:
                while queue and len(inflight) < 2 * workers:
                    task = queue.pop()
                    try:
                        inflight[pool.submit(fn, task)] = task
                    except cf.process.BrokenProcessPool:
                        queue.append(task)
                        broken = True
                        break
                finished, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    task = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except cf.process.BrokenProcessPool:
                        suspects.append(task)
                        broken = True
                        continue
                    yield task, result
            suspects.extend(inflight.values())


def _check_workers_start(ctx, name: str) -> None:
    """Raise if worker processes cannot run at all, so a broken environment is not blamed on
    a task."""
    try:
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            pool.submit(os.getpid).result()
    except cf.process.BrokenProcessPool:
        raise RuntimeError(
            f"{name} worker processes die on start (try --workers 0 to see why)"
        ) from None


def job_cpus() -> int:
    """The CPUs this job may use (its Slurm allocation or affinity mask), not the node's: every
    data stage's default worker count."""
    return len(os.sched_getaffinity(0))


def add_workers_argument(parser, help: str) -> None:
    """`--workers N` of a data stage, by default `job_cpus()`."""
    parser.add_argument("--workers", type=int, default=job_cpus(), help=help)
