"""The epoch loop that pre-training and fine-tuning share: resume position, per-rank training
randomness, one record per epoch, `last.pt` every `checkpoint_every` steps and at each epoch end
or every `checkpoint_minutes` (written in the background; `train_state.Checkpointing`), W&B
logging, and the final `checkpoint.pt` written by rank 0 only.

The stages differ only in how they train one epoch (`train_epoch`), which they pass in.
Fine-tuning also passes its tests (`unilearn.engine.best_epoch.RunTests`): `after_epoch` adds the
test split's metrics to an epoch's record before it is saved, `at_end` writes the predictions.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import tqdm

from unilearn.engine import distributed as D
from unilearn.engine.engine_finetune import EpochSums
from unilearn.engine.loader import TrainData
from unilearn.engine.prefetch import Prefetcher
from unilearn.engine.train_state import (
    Checkpointing,
    CheckpointSchedule,
    RunFiles,
    restore_rng,
    seed_everything,
)
from unilearn.models import save_checkpoint
from unilearn.progress import Progress

# train_epoch(loader, step, end_step, sums, on_step, bar) -> (step, sums, timing)
TrainEpoch = Callable[[Iterable[dict], int, int, EpochSums, Callable, tqdm], tuple]


def position(step: int, steps_per_epoch: int) -> dict[str, int]:
    """Where in the data a step leaves off (the samplers are pure functions of seed and epoch)."""
    epoch, offset = divmod(step, steps_per_epoch)
    return {"epoch": epoch, "offset": offset}


def run_epochs(
    *,
    model,
    optimizer,
    schedule,
    scaler,
    files: RunFiles,
    state: dict | None,
    digest: str,
    meta: dict[str, Any],
    identity: dict[str, Any],
    data: TrainData,
    end_step: int,
    checkpoint_every: int,
    seed: int,
    info,
    wandb,
    train_epoch: TrainEpoch,
    desc: str,
    progress: bool,
    checkpoint_minutes: float | None = None,
    log_every: int = 50,
    after_epoch: Callable[[int, int, dict], dict] | None = None,
    at_end: Callable[[dict], dict] | None = None,
) -> dict[str, Any]:
    """Train from `state` (a resumed `last.pt`, or None) to `end_step`; returns the last epoch's
    record. Always finishes the W&B run and tears down the process group. A line every
    `log_every` steps and at each epoch end goes to stdout (`unilearn.progress`), tqdm or not."""
    steps_per_epoch = data.steps_per_epoch()
    step = state["step"] if state else 0
    history: list[dict] = state["extra"]["history"] if state else []
    sums = EpochSums.from_state(state["extra"]["sums"] if state else None)

    when = CheckpointSchedule(checkpoint_every, checkpoint_minutes, log_every, end_step, info)
    checkpoints = Checkpointing(files, when, steps_per_epoch)

    def save(at_step: int, epoch_sums: EpochSums, collective: bool = True) -> None:
        extra = {"history": history, "sums": epoch_sums.state_dict(), "identity": identity}
        files.save_last(model, optimizer, scaler, position(at_step, steps_per_epoch), at_step,
                        digest, meta, extra, collective=collective)  # fmt: skip

    def on_step(at_step: int, epoch_sums: EpochSums) -> None:
        checkpoints.after_step(at_step, functools.partial(save, at_step, epoch_sums))
        report.step(at_step, epoch_sums)

    bar = tqdm(total=end_step, initial=step, desc=desc, unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)  # fmt: skip
    report = Progress(desc=desc, stage=desc.split()[0], run_dir=files.out, start_step=step,
                      end_step=end_step, steps_per_epoch=steps_per_epoch, every=log_every,
                      schedule=schedule, wandb=wandb, model=model, is_main=info.is_main)  # fmt: skip
    # Training randomness (drop path, gate noise, masks, mixup) differs per rank; a resumed run
    # restores it exactly.
    seed_everything(seed + 1000 * (info.rank + 1))
    if state:
        restore_rng(state["rng"])
    batches = None
    try:
        checkpoints.guard.install()  # SIGTERM/SIGUSR1 wait for the step's end, then save
        # one loader for the rest of the run: its workers start once and prefetch across epochs;
        # a thread receives its batches while the model trains
        batches = Prefetcher(data.run(step, end_step, seed=seed), depth=data.prefetch)
        while step < end_step:
            epoch, offset = divmod(step, steps_per_epoch)
            epoch_batches = itertools.islice(
                batches, min(steps_per_epoch - offset, end_step - step)
            )
            before = step
            step, sums, timing = train_epoch(epoch_batches, step, end_step, sums, on_step, bar)
            if step == before:
                raise RuntimeError(
                    f"the training data ran out at step {step} of {end_step} "
                    f"({steps_per_epoch} batches per epoch expected)"
                )
            if step % steps_per_epoch == 0 or step == end_step:
                means = D.reduce_mean(sums.means(), info)
                record = {"epoch": epoch, "step": step, "lr": schedule(step - 1), **means, **timing}
                if after_epoch is not None:
                    record |= after_epoch(epoch, step, record)
                history.append(record)
                sums = EpochSums()
                checkpoints.at_epoch_end(step, functools.partial(save, step, sums), history)
                wandb.log(_wandb_keys(record), step=step)
                report.epoch_end(record)
        bar.close()
        checkpoints.close()
        final = history[-1] if history else {}
        if info.is_main:
            save_checkpoint(files.out / "checkpoint.pt", model, {**meta, "train": final})
        summary = _wandb_keys(final)
        if at_end is not None:
            summary |= at_end(final)
        wandb.summary(summary)
        wandb.finish()
        report.finished()
        checkpoints.guard.deliver()  # a signal after the last step: the run is complete
    except BaseException:
        wandb.finish(exit_code=1)
        report.finished("failed")
        raise
    finally:
        if batches is not None:
            batches.close()  # stops the thread and the loader's workers
        try:
            checkpoints.close()  # the write in flight reaches the disk, whatever happened
        finally:
            checkpoints.guard.restore()
            D.cleanup(info)
    return final


def _wandb_keys(record: dict[str, Any]) -> dict[str, Any]:
    """Training metrics under `train/`; keys with their own section (`test/war`) as they are."""
    return {(k if "/" in k else f"train/{k}"): v for k, v in record.items()}
