"""The crash-tolerant process pool behind `unilearn preprocess` (unilearn.data.worker_pool)."""

from __future__ import annotations

import os

from unilearn.data.worker_pool import map_surviving_crashes


def _square_or_die(n: int) -> int:
    if n == 3:
        os._exit(1)  # as a decoder segfault: the worker process is gone, no exception
    return n * n


def test_a_task_that_kills_its_worker_is_marked_crashed_and_the_others_finish():
    results = dict(map_surviving_crashes(_square_or_die, range(8), 2, crashed=lambda n: -1))
    assert results == {0: 0, 1: 1, 2: 4, 3: -1, 4: 16, 5: 25, 6: 36, 7: 49}
