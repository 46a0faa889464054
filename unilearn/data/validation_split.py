"""The validation split of a training fold (`finetune.selection.validation`): a share of each
class of the training rows held out, fixed by the seed, to pick the reported epoch without the
test split. The fine-tuning trains on the rest (`Holdout.rest`) and tests the held-out rows
(`Holdout.held`) each epoch; the two are disjoint and together the whole training fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from unilearn.errors import InputError


def held_out(table: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out rows of `table` (columns `label`, `clip_id`): per class,
    round(share x its rows) of them, at most all but one, drawn by a generator of (seed, class)
    over the rows in clip-id order (so the split does not depend on the table's row order).
    Written per class, not with sklearn's stratified split: that one refuses classes of one clip
    and rounds the classes' shares jointly."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"validation share {share}: expected a fraction in (0, 1)")
    mask = np.zeros(len(table), dtype=bool)
    labels = table["label"].to_numpy()
    ids = table["clip_id"].astype(str).to_numpy()
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        rows = rows[np.argsort(ids[rows], kind="stable")]
        take = min(int(np.floor(share * len(rows) + 0.5)), len(rows) - 1)
        picked = np.random.default_rng([seed, int(k)]).permutation(len(rows))[:take]
        mask[rows[picked]] = True
    return mask


@dataclass(frozen=True)
class Holdout:
    """The validation split of `dataset`'s training rows: `share` of each class, by `seed`."""

    dataset: str
    share: float
    seed: int

    @classmethod
    def of_run(cls, share: float | None, dataset: str, seed: int) -> Holdout | None:
        """A run's validation split (`finetune.selection.holdout` of its config), None when off."""
        return None if share is None else cls(dataset, share, seed)

    def training_rows(self, table: pd.DataFrame, dataset: str) -> pd.DataFrame:
        """What a run trains on of `dataset`'s training rows: the rest, if the split is of this
        dataset, else all of them (the SFER rows of a DFER run)."""
        return self.rest(table) if dataset == self.dataset else table

    def held(self, table: pd.DataFrame) -> pd.DataFrame:
        """The held-out rows (the validation split), re-indexed 0..n-1."""
        return table[self._mask(table)].reset_index(drop=True)

    def rest(self, table: pd.DataFrame) -> pd.DataFrame:
        """The training rows left to train on, re-indexed 0..n-1."""
        return table[~self._mask(table)].reset_index(drop=True)

    def _mask(self, table: pd.DataFrame) -> np.ndarray:
        mask = held_out(table, self.share, self.seed)
        if not mask.any():  # refused before training starts (the rest is asked for first)
            raise InputError(
                f"finetune.selection.validation={self.share}: holds out no clip of the "
                f"{len(table)} training clips of {self.dataset} (each class gives round(share x "
                "its clips), at most all but one); raise it, or set it to null to train on the "
                "whole fold"
            )
        return mask
