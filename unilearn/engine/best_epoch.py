"""The test inside the fine-tuning job, as the authors run it: the run's own test split every
`finetune.eval_every` epochs (and always after the last), `checkpoint-best.pt` kept for the epoch
with the best WAR there (ties keep the earlier epoch), and at the end the prediction files of the
last and of the best weights on every test set of the run (`unilearn.report.layout.tests_of`).

The tests are `unilearn evaluate`'s (same loader, stride, preprocessing and 2-clip average), on
the model the job already holds. A test draws no training random number: the RNG states are put
back afterwards, so a run with tests trains bit for bit like one without, and a killed run
resumes bitwise. The best epoch so far travels in the epoch records (`best/epoch`, `best/war`)
that `last.pt` keeps. Under DDP every rank tests its share of the clips and gets the gathered
result; rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unilearn.engine import distributed as D
from unilearn.engine.scoring import (
    TestResult,
    check_test_set,
    test_loader,
    test_metrics,
    test_model,
    test_summary,
    write_predictions,
)
from unilearn.engine.targets import TestSet, head_for
from unilearn.engine.train_state import capture_rng, restore_rng, unwrap
from unilearn.models import save_checkpoint
from unilearn.models.checkpoint import CheckpointError, read_checkpoint
from unilearn.report.layout import prediction_name

BEST_FILE = "checkpoint-best.pt"


class RunTests:
    """Tests of one fine-tuning run: `after_epoch` (per-epoch test, best checkpoint) and
    `at_end` (the prediction files), both called by `unilearn.engine.finetune.run`."""

    def __init__(self, *, model, tests: list[TestSet], cfg, store: Path | None, meta: dict,
                 info: D.DistInfo, dtype, out: Path, eval_every: int, end_step: int,
                 history: list[dict], progress: bool = False) -> None:  # fmt: skip
        if not tests:
            raise ValueError("a fine-tuning run needs at least its own test set")
        self.model, self.tests, self.cfg, self.store = model, tests, cfg, store
        self.meta, self.info, self.dtype, self.out = meta, info, dtype, Path(out)
        self.eval_every, self.end_step, self.progress = eval_every, end_step, progress
        self.best = _best_of(history)  # the record of the best epoch so far (from last.pt)
        self._loaders: dict[TestSet, Any] = {}
        self._last: dict[TestSet, TestResult] = {}  # this process's test of the final weights

    def loader(self, test: TestSet):
        """The test loader of `test`, built once per run."""
        if test not in self._loaders:
            self._loaders[test] = test_loader(self.cfg, self.store, test.dataset, test.fold,
                                              self.meta, self.info)  # fmt: skip
        return self._loaders[test]

    def test(self, test: TestSet) -> TestResult:
        """Test the model as it is now; the training RNG streams are left where they were."""
        rng = capture_rng()
        try:
            result = test_model(self.model, self.loader(test), head_for(test.dataset),
                                self.info, self.dtype, self.progress)  # fmt: skip
            check_test_set(result, test.dataset, test.fold, self.cfg.evaluate.max_unreadable)
            return result
        finally:
            restore_rng(rng)

    def due(self, epoch: int, step: int) -> bool:
        final = step >= self.end_step
        return final or (self.eval_every > 0 and (epoch + 1) % self.eval_every == 0)

    def after_epoch(self, epoch: int, step: int, record: dict[str, Any]) -> dict[str, Any]:
        """Fields for the epoch's record: `test/uar`, `test/war` (own test split) when tested,
        and `best/epoch`, `best/war` (the best so far). A new best (strictly higher WAR) writes
        checkpoint-best.pt before the record reaches last.pt."""
        if not self.due(epoch, step):
            return self._best_fields()
        own = self.tests[0]
        result = self.test(own)
        if step >= self.end_step:
            self._last[own] = result
        metrics = test_metrics(result, self.meta["labels"][head_for(own.dataset)])
        fields = {"test/uar": metrics["uar"], "test/war": metrics["war"]}
        if self.best is None or metrics["war"] > self.best["test/war"]:
            # the record as last.pt will hold it (a resumed run reads the best back from there)
            self.best = {**record, **fields, "best/epoch": epoch, "best/war": metrics["war"]}
            if self.info.is_main:
                save_checkpoint(self.out / BEST_FILE, unwrap(self.model),
                                {**self.meta, "train": self.best})  # fmt: skip
        return fields | self._best_fields()

    def _best_fields(self) -> dict[str, Any]:
        if self.best is None:
            return {}
        return {"best/epoch": self.best["epoch"], "best/war": self.best["test/war"]}

    def at_end(self, final: dict[str, Any]) -> dict[str, float]:
        """Write the prediction files of the last weights (the model now) and of the best epoch's
        (checkpoint-best.pt) on every test set; returns the W&B summary fields."""
        if self.best is None:
            raise RuntimeError(f"{self.out}: the run ended without a test of its own split")
        summary = {}
        last = {t: self._last.get(t) or self.test(t) for t in self.tests}
        best_is_last = self.best["step"] == final.get("step")
        if not best_is_last:
            self._load_best()
            best = {t: self.test(t) for t in self.tests}
        else:
            best = last
        for weights, results, train in (("last", last, final), ("best", best, self.best)):
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

    def _load_best(self) -> None:
        path = self.out / BEST_FILE
        state = read_checkpoint(path)  # names the file when it is missing or truncated
        saved = (state.get("meta") or {}).get("train", {}).get("step")
        if saved != self.best["step"]:
            raise CheckpointError(
                f"{path}: holds the weights of step {saved}, but the run's best epoch ended at "
                f"step {self.best['step']}; delete {self.out / 'last.pt'} to fine-tune afresh"
            )
        unwrap(self.model).load_state_dict(state["model"])


def _best_of(history: list[dict]) -> dict[str, Any] | None:
    """The record of the best tested epoch (highest `test/war`, the earlier on ties)."""
    best = None
    for record in history:
        if "test/war" in record and (best is None or record["test/war"] > best["test/war"]):
            best = record
    return best
