"""What a fine-tuning or a test runs on: a dataset and, for a cross-validated one, a fold
(`check_fold`); the test sets of a fine-tuning run (`TestSet`, `test_sets`, `default_tests`);
the head that scores a test set (`head_for`). Shared by `unilearn finetune`, `unilearn evaluate`
and the in-job tests (`unilearn.engine.best_epoch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unilearn.catalogue import FOLDS
from unilearn.report.layout import tests_of


@dataclass(frozen=True)
class TestSet:
    dataset: str
    fold: int | None  # the run's fold where the test set is its own cross-validated dataset


def check_fold(dataset: str, fold: int | None) -> None:
    """A cross-validated dataset (DFEW, MAFW) needs `--fold 1..5`; the others refuse one."""
    if FOLDS.get(dataset):
        if fold not in FOLDS[dataset]:
            raise SystemExit(
                f"--dataset {dataset} is evaluated by 5-fold cross-validation: give --fold 1..5"
            )
    elif fold is not None:
        raise SystemExit(f"--dataset {dataset} has one official split: do not give --fold")


def head_for(dataset: str) -> str:
    """AffectNet-7 is scored with the SFER head, the DFER datasets with the DFER head."""
    return "sfer" if dataset == "affectnet7" else "dfer"


def default_tests(cfg, experiment: str, dataset: str) -> list[str]:
    """The test sets the workflow asks of a run (`unilearn.report.layout.tests_of`)."""
    if experiment not in cfg.experiments:
        return [dataset]  # resolve_experiment names the problem
    return tests_of(dataset, cfg.experiments[experiment].tasks)


def test_sets(dataset: str, fold: int | None, tests: Sequence[str]) -> list[TestSet]:
    """`--test` names as test sets: the run's own dataset at its fold, another one unfolded."""
    out = []
    for test in tests:
        if test == dataset:
            out.append(TestSet(test, fold))
        elif FOLDS.get(test):
            raise SystemExit(f"--test {test}: a {dataset} run is tested on {test} only when it "
                             f"is fine-tuned on {test} (its folds are {test}'s)")  # fmt: skip
        else:
            out.append(TestSet(test, None))
    return out
