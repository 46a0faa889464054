"""When a training run writes `last.pt`, and what goes in it besides the training state: every
`checkpoint_every` steps and at each epoch end, or, with `checkpoint_minutes`, at the first check
after that much wall time (`CheckpointSchedule`); at once at the end of the step in flight on
SIGTERM / SIGUSR1, the signals Slurm sends before a time limit or pre-emption
(`PreemptionGuard`); always at the last step. `Checkpoints` is what the run calls
(`unilearn.engine.training`): after each step, at each epoch end, and around the run (a context
that holds the signals).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unilearn.engine.train_state import RunFiles
from unilearn.models import save_checkpoint


class CheckpointSchedule:
    """When the run writes `last.pt`: after `every` steps and at each epoch end, or with
    `minutes` set, at the first epoch end or check (every `check_every` steps) once that much
    wall time has passed since the last save; always at the last step.

    The time trigger is rank 0's clock, broadcast at the checks (which fall on the same steps on
    every rank), so all ranks agree on which steps save: every save begins with the NaN check,
    a collective. With `minutes`, `every` still saves (deterministic saves for tests)."""

    def __init__(
        self,
        every: int | None,
        minutes: float | None,
        check_every: int,
        end_step: int,
        info,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every, self.minutes, self.check_every = every, minutes, check_every
        self.end_step, self.info, self.clock = end_step, info, clock
        self.last_save = clock()

    def saved(self) -> None:
        self.last_save = self.clock()

    def _time_due(self) -> bool:
        from unilearn.engine.distributed import broadcast_flag

        late = self.clock() - self.last_save >= self.minutes * 60
        return broadcast_flag(late, self.info)

    def after_step(self, step: int) -> bool:
        """Save now, after step `step` (not an epoch end)?"""
        if self.every and step % self.every == 0:
            return True
        return bool(self.minutes) and step % self.check_every == 0 and self._time_due()

    def at_epoch_end(self, step: int) -> bool:
        """Save now, at the end of an epoch that ended after step `step`?"""
        if step >= self.end_step or not self.minutes:
            return True
        return bool(self.every and step % self.every == 0) or self._time_due()


class PreemptionGuard:
    """Defer SIGTERM / SIGUSR1 to the next step boundary, where the run saves `last.pt` and
    then hands the signal to whoever handled it before (submitit requeues the job on SIGUSR1 and
    exits; without a handler the process ends as the signal says). A signal raised inside a step
    would leave a half-updated model; this one waits for the step to finish (seconds, where
    Slurm gives 90 s between the signal and the kill). Only the main thread can install it."""

    SIGNALS = tuple(
        s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s
    )

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                previous = signal.getsignal(sig)
                if previous in (signal.SIG_IGN, None):
                    continue  # ignored (or set outside Python): leave it so
                self._previous[sig] = previous
                signal.signal(sig, self._record)

    def _record(self, signum: int, frame) -> None:
        self.pending = signum

    def restore(self) -> None:
        """Put the previous handlers back (a pending signal is dropped: the run failed)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def deliver(self) -> None:
        """Uninstall, then pass the pending signal on to the previous handler."""
        signum, previous = self.pending, self._previous.get(self.pending)
        self.restore()
        self.pending = None
        if signum is None:
            return
        if callable(previous):
            previous(signum, None)  # submitit: requeue + sys.exit on rank 0
        else:  # SIG_DFL
            os.kill(os.getpid(), signum)


class Checkpoints:
    """The `last.pt` of one run: the save decisions after a step and at an epoch end, and on a
    signal (save at once, wait for the write, then pass the signal on). A save holds the model,
    optimiser and scaler (`RunFiles.save_last`) with the run's `history` (the list the run
    appends its epoch records to), the running `EpochSums` (`unilearn.engine.training`) and the
    run's `identity`.

    Use it as a context around the training: it holds SIGTERM / SIGUSR1 until a step ends, and on
    leaving waits for the write in flight and gives the handlers back. `save_final` writes the
    final `checkpoint.pt`; `deliver()` then passes on a signal that came after the last step."""

    def __init__(self, files: RunFiles, schedule: CheckpointSchedule, steps_per_epoch: int, *,
                 model, optimizer, scaler, config_hash: str, meta: dict[str, Any],
                 identity: dict[str, Any], history: list[dict]) -> None:  # fmt: skip
        self.files, self.schedule, self.steps_per_epoch = files, schedule, steps_per_epoch
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.config_hash, self.meta, self.identity = config_hash, meta, identity
        self.history = history
        self.guard = PreemptionGuard()

    def __enter__(self) -> Checkpoints:
        self.guard.install()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()  # the write in flight reaches the disk, whatever happened
        finally:
            self.guard.restore()

    def save(self, step: int, sums, collective: bool = True) -> None:
        """Write `last.pt` as of the end of step `step`."""
        extra = {"history": self.history, "sums": sums.state_dict(), "identity": self.identity}
        self.files.save_last(self.model, self.optimizer, self.scaler, step, self.config_hash,
                             self.meta, extra, collective=collective)  # fmt: skip

    def after_step(self, step: int, sums) -> None:
        """After step `step` inside an epoch: save when due, or on a signal (then pass it on)."""
        if step % self.steps_per_epoch == 0 or step >= self.schedule.end_step:
            return  # an epoch end: `at_epoch_end` saves, with the epoch's record
        due = self.schedule.after_step(step)  # on every rank, whatever the signal (collective)
        if self.guard.pending is not None:
            self._stop(step, sums)
        elif due:
            self.save(step, sums)
            self.schedule.saved()

    def at_epoch_end(self, step: int, sums) -> None:
        """After the epoch whose record `history` ends with; `sums` are the next epoch's."""
        due = self.schedule.at_epoch_end(step)
        if self.guard.pending is not None:
            self._stop(step, sums)
        elif due:
            self.save(step, sums)
            self.schedule.saved()
        else:
            self.files.write_log(self.history)

    def _stop(self, step: int, sums) -> None:
        self.save(step, sums, collective=False)  # the ranks may see the signal at different steps
        self.files.flush()
        self.guard.deliver()

    def save_final(self, path: Path) -> dict[str, Any]:
        """After the last step: wait for the last `last.pt` write, then write the final
        checkpoint (weights + meta + the last epoch's record; rank 0); returns that record."""
        self.close()
        final = self.history[-1] if self.history else {}
        if self.files.is_main:
            save_checkpoint(path, self.model, {**self.meta, "train": final})
        return final

    def deliver(self) -> None:
        """The run is complete: pass on a signal that came after the last step."""
        self.guard.deliver()

    def close(self) -> None:
        """Wait for the write in flight (also when the run failed or was killed by an
        exception: the rename completes, or the old `last.pt` stays)."""
        self.files.flush()
