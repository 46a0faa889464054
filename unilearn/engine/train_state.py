"""Resumable training state: one atomic `last.pt` holding the model, optimiser, grad scaler,
sampler position, step counter, running metrics and every RNG (python, numpy, torch, CUDA), so
that a run killed at any step and resumed continues bit for bit; and the NaN/inf loss guard.

Files are loaded with `weights_only=True`, so every state is stored as tensors and plain values.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from unilearn.models.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

FORMAT = "unilearn-train-state/1"
RESUME_FILE = "last.pt"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stopped and kept its last good checkpoint."""


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


# -- RNG ---------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Every RNG the training loop draws from, as tensors and plain values."""
    version, py_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {
            "version": version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put every RNG back where `capture_rng` found it."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- checkpoints -------------------------------------------------------------------------------


def save_train_state(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    sampler_state: dict[str, Any] | None,
    step: int,
    config_hash: str,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a resumable checkpoint atomically (a killed job never leaves half a `last.pt`).

    Call it between steps: `step` is the number of optimiser steps done so far, and the RNG
    states captured now are the ones the next step must start from."""
    save_checkpoint(
        path,
        unwrap(model),
        meta,
        format=FORMAT,
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else None,
        sampler=sampler_state,
        rng=capture_rng(),
        step=int(step),
        config_hash=config_hash,
        extra=extra or {},
    )


def load_train_state(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config_hash: str,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a resumable checkpoint into model, optimiser and scaler; return the whole state
    (`step`, `sampler`, `rng`, `extra`). RNG states are NOT applied here: the caller calls
    `restore_rng(state["rng"])` right before the next step, after everything that draws random
    numbers during setup."""
    state = read_checkpoint(path)  # names the file when it is missing, truncated or foreign
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a resumable training state (format {state.get('format')!r}, expected {FORMAT!r})"
        )
    if state["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path}: written by a run with config {state['config_hash'][:12]}, this run's config is "
            f"{config_hash[:12]}. Resuming would mix two experiments: use a new --out, or delete "
            f"{path} to restart."
        )
    saved = state["extra"].get("identity")
    if identity is not None and saved != identity:
        raise CheckpointError(
            f"{path}: belongs to run {saved}, not to this one {identity}; use another --out, or "
            f"delete {path} to restart"
        )
    try:
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: does not fit this model/optimiser: {e}") from None
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    return state


# -- the NaN guard -----------------------------------------------------------------------------


def check_finite(loss: float, step: int, last_good: str | None) -> None:
    """Stop the run with a clear message when the loss is NaN or inf (before any update or
    checkpoint of this step, so the last checkpoint on disk is a good one)."""
    if math.isfinite(loss):
        return
    kept = (
        f"the last good checkpoint {last_good} is kept"
        if last_good
        else "no checkpoint was written yet"
    )
    raise NonFiniteLossError(
        f"loss is {loss} at step {step}: stopping the run ({kept}). Lower the learning rate "
        "(finetune.blr / pretrain.blr), set finetune.clip_grad, or check the inputs of this step."
    )


# -- the run directory -------------------------------------------------------------------------


class RunFiles:
    """A run directory's training files: `last.pt` (resumable), `log.jsonl` (one line per
    epoch). Every rank reads; only rank 0 writes."""

    def __init__(self, out: str | os.PathLike, dist_info) -> None:
        from pathlib import Path

        self.out = Path(out)
        self.is_main = dist_info.is_main
        self.last = self.out / RESUME_FILE
        self._written: str | None = str(self.last) if self.last.is_file() else None
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

    def last_good(self) -> str | None:
        """The resumable checkpoint on disk, if any (for the NaN guard's message)."""
        return self._written

    def resume(
        self, model, optimizer, scaler, config_hash: str, identity: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The saved state if `last.pt` exists (loaded into model/optimiser/scaler), else None.
        `identity` (experiment, dataset, fold, init / mode) must match the saved one."""
        if not self.last.is_file():
            return None
        state = load_train_state(
            self.last, model=model, optimizer=optimizer, scaler=scaler, config_hash=config_hash,
            identity=identity,
        )  # fmt: skip
        if self.is_main:
            print(f"resuming from {self.last} at step {state['step']}", flush=True)
        return state

    def save_last(self, model, optimizer, scaler, sampler_state, step, config_hash, meta, extra):
        if self.is_main:
            save_train_state(
                self.last, model=model, optimizer=optimizer, scaler=scaler,
                sampler_state=sampler_state, step=step, config_hash=config_hash, meta=meta,
                extra=extra,
            )  # fmt: skip
            self._written = str(self.last)

    def write_log(self, history: list[dict]) -> None:
        """`log.jsonl` rewritten from the history kept in `last.pt`, so it always matches it."""
        if self.is_main:
            import json

            from unilearn.atomic import write_text

            write_text(self.out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
