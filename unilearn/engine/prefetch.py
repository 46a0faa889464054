"""Fetch the next training batches in a background thread while the model trains on this one.

The training loop's wait for a batch is then a hand-over between threads: with DataLoader workers
the thread absorbs the receive cost of every batch (a few shared-memory tensors per batch cost
~2 ms, 10% of a 20 ms CPU step of the demo model); without workers it runs the loading itself (the
decoders and warps release the GIL). A DataLoader's pin-memory thread does the same, but only on
CUDA; torch has no thread prefetcher for CPU, and the one on PyPI (prefetch_generator) is
unmaintained and does not stop or surface errors, hence this one.

Order is preserved (one thread reads the iterator in order), so batches and resume are unchanged;
every augmentation is a pure function of the batch's sample seeds, never of the global RNG, so
loading in another thread cannot shift the training's random numbers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Iterator):
    """Iterate `iterable` up to `depth` items ahead in a daemon thread (`depth` 0: in the calling
    thread, no thread). `close()` (also on garbage collection) stops the thread; an exception
    raised by the iterable is raised by `next()` at the position it occurred. As a context, it
    closes on leaving."""

    def __init__(self, iterable: Iterable, depth: int = 2) -> None:
        self._stop = threading.Event()
        self._done = False
        self._thread: threading.Thread | None = None
        self._inline: Iterator | None = None
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        if depth == 0:
            self._inline = iter(iterable)
            return
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(
            target=self._fill, args=(iter(iterable),), name="unilearn-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(error))
        finally:
            del iterator  # a DataLoader iterator shuts its workers down when collected

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._inline is not None:
            return next(self._inline)
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.error
        return item

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread and drop what it fetched ahead."""
        self._done = True
        self._inline = None
        if self._thread is None:
            return
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __del__(self) -> None:
        self.close()
