"""The test inside the fine-tuning job, as the authors run it, and the epochs it reports: the
run's own test split every `finetune.eval_every` epochs (and always after the last), and at the
end the prediction files of each reported weights on every test set of the run
(`unilearn.layout.tests_of`):

- `last`: the weights after the last epoch (`checkpoint.pt`);
- `best`, "as the authors report" (`finetune.selection.best`): `authors` (default) = each tested
  epoch scores ONE clip per test video at a random position, with the router's noise on, as
  their per-epoch validation pass (`run_class_finetuning.py` l.732-743; `kinetics.py`
  `validation` mode samples like training); `checkpoint-best.pt` is the epoch of the highest WAR
  there (ties keep the earlier epoch), then tested with the 2-clip test. `test` = the epoch of the
  highest WAR of the 2-clip test itself (labelled as such: it picks on the very test it reports).
  The clip positions are a pure function of (seed, epoch, video), the noise of (seed, epoch);
- `val` (with `finetune.selection.validation`): the epoch of the highest WAR of the 2-clip test
  on the validation split held out of the training fold (`unilearn.data.validation_split`);
  `checkpoint-val.pt`, its test split scored once, at the end.

The tests are `unilearn evaluate`'s (same loader, stride, preprocessing and 2-clip average), on
the model the job already holds. A test draws no training random number: the RNG states are put
back afterwards, so a run with tests trains bit for bit like one without, and a killed run
resumes bitwise. The best epochs so far travel in the epoch records (`best/epoch`, `best/war`,
`best_val/epoch`, `best_val/war`) that `last.pt` keeps. Under DDP every rank tests its share of
the clips and gets the gathered result; rank 0 writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilearn.engine import distributed as D
from unilearn.engine.scoring import (
    TestResult,
    TestSet,
    check_test_set,
    head_for,
    test_loader,
    test_metrics,
    test_model,
    test_summary,
    write_predictions,
)
from unilearn.engine.step import unwrap
from unilearn.engine.train_state import capture_rng, restore_rng
from unilearn.layout import CHECKPOINT_NAME, prediction_name
from unilearn.models import eval_noise, save_checkpoint
from unilearn.models.checkpoint import CheckpointError, read_checkpoint


@dataclass
class Pick:
    """One rule picking an epoch: the weights it names (`best`, `val`), the record field its WAR
    is read from, the checkpoint it keeps, the record field prefix of its best so far."""

    weights: str
    score: str  # "select/war" (the authors' pass), "test/war" or "val/war"
    file: str
    prefix: str  # "best" or "best_val"
    best: dict[str, Any] | None = None  # the record of the best epoch so far

    def fields(self) -> dict[str, Any]:
        if self.best is None:
            return {}
        return {
            f"{self.prefix}/epoch": self.best["epoch"],
            f"{self.prefix}/war": self.best[self.score],
        }


class RunTests:
    """Tests of one fine-tuning run (`unilearn.engine.training.TrainingRun`, started: its model,
    config, meta, ranks, autocast dtype, run directory, last step, epoch records so far):
    `after_epoch` (per-epoch tests, the picked checkpoints) and `at_end` (the prediction files),
    the hooks of its epoch loop. `holdout`: the validation split of the run's training fold, or
    None (no `val` weights)."""

    def __init__(self, run, tests: list[TestSet], store: Path | None, holdout) -> None:
        if not tests:
            raise ValueError("a fine-tuning run needs at least its own test set")
        cfg = run.cfg
        self.model, self.tests, self.cfg, self.store = run.model, tests, cfg, store
        self.meta, self.info, self.out = run.meta, run.info, run.out
        self.dtype = run.ctx.autocast_dtype
        self.eval_every, self.end_step = cfg.finetune.eval_every, run.end_step
        self.progress = run.progress
        self.rule, self.holdout, self.seed = cfg.finetune.selection.best, holdout, cfg.seed
        self.picks = [Pick("best", "select/war" if self.rule == "authors" else "test/war",
                           CHECKPOINT_NAME["best"], "best")]  # fmt: skip
        if holdout is not None:
            self.picks.append(Pick("val", "val/war", CHECKPOINT_NAME["val"], "best_val"))
        for pick in self.picks:  # the best epochs so far (from last.pt's records)
            pick.best = _best_of(run.history, pick.score)
        self._loaders: dict[tuple[str, TestSet], Any] = {}
        self._last: dict[TestSet, TestResult] = {}  # this process's test of the final weights

    def loader(self, test: TestSet, kind: str = "test"):
        """The loader of `test`, built once per run: `test` (the 2-clip test), `select` (one clip
        per video at an epoch's random position) or `val` (the 2-clip test of the held-out
        training rows of `test`'s dataset)."""
        if (kind, test) not in self._loaders:
            extra = {"select": {"placement_seed": self.seed},
                     "val": {"holdout": self.holdout}}.get(kind, {})  # fmt: skip
            self._loaders[kind, test] = test_loader(self.cfg, self.store, test.dataset,
                                                    test.fold, self.meta, self.info, **extra)  # fmt: skip
        return self._loaders[kind, test]

    def test(self, test: TestSet, kind: str = "test", epoch: int | None = None) -> TestResult:
        """Test the model as it is now; the training RNG streams are left where they were.
        `select` at `epoch`: its clip positions, and the router's noise drawn from a generator
        seeded by (seed, epoch)."""
        rng = capture_rng()
        try:
            loader = self.loader(test, kind)
            if kind == "select":
                loader.set_epoch(epoch)
                torch.manual_seed(noise_seed(self.seed, epoch))
            with eval_noise(self.model, on=kind == "select"):
                result = test_model(self.model, loader, head_for(test.dataset), self.info,
                                    self.dtype, self.progress)  # fmt: skip
            check_test_set(result, test.dataset, test.fold, self.cfg.evaluate.max_unreadable)
            return result
        finally:
            restore_rng(rng)

    def due(self, epoch: int, step: int) -> bool:
        final = step >= self.end_step
        return final or (self.eval_every > 0 and (epoch + 1) % self.eval_every == 0)

    def after_epoch(self, epoch: int, step: int, record: dict[str, Any]) -> dict[str, Any]:
        """Fields for the epoch's record when tested: `select/uar`, `select/war` (the authors'
        pass) or `test/uar`, `test/war` (rule `test`), `val/uar`, `val/war` (validation split),
        and the best so far of each pick. A new best (strictly higher WAR) writes its
        checkpoint before the record reaches last.pt."""
        if not self.due(epoch, step):
            return self._best_fields()
        own = self.tests[0]
        classes = self.meta["labels"][head_for(own.dataset)]
        fields = {}
        kinds = ["select" if self.rule == "authors" else "test"] + ["val"] * bool(self.holdout)
        for kind in kinds:
            result = self.test(own, kind, epoch)
            if kind == "test" and step >= self.end_step:
                self._last[own] = result
            metrics = test_metrics(result, classes)
            fields |= {f"{kind}/uar": metrics["uar"], f"{kind}/war": metrics["war"]}
        for pick in self.picks:
            if pick.best is None or fields[pick.score] > pick.best[pick.score]:
                # the record as last.pt will hold it (a resumed run reads the best back there)
                pick.best = {**record, **fields, "epoch": epoch}
                if self.info.is_main:
                    save_checkpoint(self.out / pick.file, unwrap(self.model),
                                    {**self.meta, "train": pick.best})  # fmt: skip
        return fields | self._best_fields()

    def _best_fields(self) -> dict[str, Any]:
        return {k: v for pick in self.picks for k, v in pick.fields().items()}

    def at_end(self, final: dict[str, Any]) -> dict[str, float]:
        """Write the prediction files of the last weights (the model now) and of each picked
        epoch's (its checkpoint) on every test set; returns the W&B summary fields."""
        if any(pick.best is None for pick in self.picks):
            raise RuntimeError(f"{self.out}: the run ended without a test of its own split")
        last = {t: self._last.get(t) or self.test(t) for t in self.tests}
        by_step = {final.get("step"): last}
        reported = [("last", last, final)]
        for pick in self.picks:
            step = pick.best["step"]
            if step not in by_step:
                self._load(pick)
                by_step[step] = {t: self.test(t) for t in self.tests}
            reported.append((pick.weights, by_step[step], pick.best))
        summary = {}
        for weights, results, train in reported:
            for test, result in results.items():
                if self.info.is_main:
                    out = self.out / prediction_name(test.dataset, weights)
                    metrics = write_predictions(out, result, {**self.meta, "train": train},
                                                test.dataset, test.fold)  # fmt: skip
                    prefix = f"{weights}/{test.dataset}"
                    summary |= {k.replace("test/", f"{prefix}/"): v
                                for k, v in test_summary(metrics, result.usage).items()
                                if k.startswith("test/")}  # fmt: skip
        D.barrier(self.info)
        return summary

    def _load(self, pick: Pick) -> None:
        path = self.out / pick.file
        state = read_checkpoint(path)  # names the file when it is missing or truncated
        saved = (state.get("meta") or {}).get("train", {}).get("step")
        if saved != pick.best["step"]:
            raise CheckpointError(
                f"{path}: holds the weights of step {saved}, but the run's {pick.weights} epoch "
                f"ended at step {pick.best['step']}; delete {self.out / 'last.pt'} to fine-tune "
                "afresh"
            )
        unwrap(self.model).load_state_dict(state["model"])


def noise_seed(seed: int, epoch: int) -> int:
    """The torch seed of the router's noise in the authors' validation pass of `epoch`."""
    return int(np.random.SeedSequence([seed, epoch, 0x5E1EC7]).generate_state(1)[0])


def _best_of(history: list[dict], score: str) -> dict[str, Any] | None:
    """The record of the best tested epoch (highest `score`, the earlier on ties)."""
    best = None
    for record in history:
        if score in record and (best is None or record[score] > best[score]):
            best = record
    return best
