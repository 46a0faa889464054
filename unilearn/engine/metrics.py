"""UAR, WAR and the confusion matrix, in numpy so aggregation needs no torch.

UAR is the mean of per-class recall over the classes present in the labels (as sklearn's
`balanced_accuracy_score`); WAR is overall accuracy (recall weighted by class support).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts `[true, predicted]` as int64 `[num_classes, num_classes]`."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.shape[0]} labels but {preds.shape[0]} predictions")
    for name, values in (("label", labels), ("prediction", preds)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"{name} {int(bad[0])} outside 0..{num_classes - 1}")
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_recall(conf: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class without test samples."""
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)


def uar(conf: np.ndarray) -> float:
    """Unweighted average recall: mean recall over the classes that have test samples (NaN when
    none has: an empty test set)."""
    recall = per_class_recall(conf)
    seen = recall[~np.isnan(recall)]
    return float(seen.mean()) if len(seen) else float("nan")


def war(conf: np.ndarray) -> float:
    """Weighted average recall = accuracy."""
    return float(np.trace(conf) / max(conf.sum(), 1))


def classification_metrics(
    labels: Sequence[int],
    preds: Sequence[int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict:
    """UAR, WAR, per-class recall and the confusion matrix as a JSON-ready dict."""
    conf = confusion_matrix(labels, preds, num_classes)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    recall = per_class_recall(conf)
    return {
        "uar": uar(conf),
        "war": war(conf),
        "n": int(conf.sum()),
        "class_names": names,
        "per_class_recall": {n: (None if np.isnan(r) else float(r)) for n, r in zip(names, recall)},
        "support": {n: int(s) for n, s in zip(names, conf.sum(axis=1))},
        "confusion": conf.tolist(),
    }
