"""Step-loop stall per `last.pt` save, at the ViT-B UniLearn size by default (101M parameters +
AdamW moments: ~1.2 GB of state), three ways measured in the same run:

  synchronous      serialise + write + rename in the training thread
  copy at the call the whole state copied to reused host buffers before `save()` returns, then
                   written by a thread (`CheckpointWriter.save` without `hold`: the engine's
                   previous path)
  deferred         the engine's path (`hold=optimizer`): small tensors copied at the call, the
                   parameters and AdamW moments copied by the writer thread (CUDA: a side
                   stream into pinned buffers) while the next step's forward and backward run;
                   that step's `optimizer.step()` waits for the copy, never for the disk

The stall is what the training thread waits for: the save call, plus (deferred) the wait of the
next `optimizer.step()`, here after one forward + backward of the model on a short clip (2
frames; the stall of a real step is at most this). The first save allocates its host buffers
and is left out; the steady state reuses them. The background write is timed too (it must stay
under the checkpoint interval).

    python bench/checkpoint_stall.py [--model unilearn_base_patch16_160] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from unilearn.atomic import torch_save
from unilearn.engine.checkpoint_writer import CheckpointWriter
from unilearn.engine.optim import build_optimizer
from unilearn.engine.train_state import train_state
from unilearn.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_with_adam_state(
    name: str, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model and an AdamW whose moments exist (one step on zero gradients)."""
    model = create_model(name, num_classes=7, num_classes_sfer=7).to(device)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def next_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device) -> None:
    """One training step on a short clip (2 frames at the model's size, zero loss weight: the
    parameters do not move, the optimiser step still runs)."""
    x = torch.zeros(1, 3, 2, model.img_size, model.img_size, device=device)
    logits = model.forward_head(model.forward_features(x), task="dfer")
    (logits.float().sum() * 0).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def checkpoint_stall(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    folder: Path,
    repeats: int = 3,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Seconds per save (medians): `sync`, `copy` (copy at the call), `async` (deferred: save
    call + the next step's wait), `async_call` / `async_step_wait` (its parts), `step` (one
    step without a save in flight), `async_step` (the next step with the deferred save in
    flight, to the device's sync: on CUDA the copy delays the step's kernels, not the host),
    `write` (background write) and the state's `bytes`."""
    device = device or next(model.parameters()).device
    kwargs = dict(model=model, optimizer=optimizer, scaler=None, step=1, config_hash="bench",
                  meta={}, extra={"history": []})  # fmt: skip
    path = folder / "last.pt"
    sync_times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        torch_save(train_state(**kwargs), path)  # synchronous, atomic
        sync_times.append(time.perf_counter() - t)
    size = path.stat().st_size
    steps = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        next_step(model, optimizer, device)
        _sync(device)
        steps.append(time.perf_counter() - t)
    out: dict[str, list[float]] = {"copy": [], "async_call": [], "async_step_wait": [],
                                   "async": [], "async_step": [], "write": []}  # fmt: skip
    for hold in (None, optimizer):
        writer = CheckpointWriter()
        for i in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            writer.save(path, train_state(**kwargs), hold=hold)  # the training thread waits
            call = time.perf_counter() - t
            writer.step_wait = 0.0
            s = time.perf_counter()
            next_step(model, optimizer, device)
            wait = writer.step_wait
            _sync(device)
            step = time.perf_counter() - s
            writer.wait()
            _sync(device)
            if i == 0:
                continue  # allocates the host buffers
            if hold is None:
                out["copy"].append(call)
            else:
                out["async_call"].append(call)
                out["async_step_wait"].append(wait)
                out["async"].append(call + wait)
                out["async_step"].append(step)
                out["write"].append(time.perf_counter() - t)
    result = {k: statistics.median(v) for k, v in out.items()}
    return result | {"sync": statistics.median(sync_times), "step": statistics.median(steps),
                     "bytes": float(size)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="unilearn_base_patch16_160")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()
    device = torch.device(args.device)
    model, optimizer = model_with_adam_state(args.model, device)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        r = checkpoint_stall(model, optimizer, Path(tmp), args.repeats, device)
    print(f"{args.model} on {device}: state {r['bytes'] / 1e9:.2f} GB per last.pt; "
          f"{os.cpu_count()} cores (shared machine: compare the ratio)", file=sys.stderr)  # fmt: skip
    print(f"{'save':<44}{'ms per save':>12}")
    print(f"{'synchronous (stall = whole write)':<44}{r['sync'] * 1e3:>12.0f}")
    print(f"{'copy at the call (stall = whole copy)':<44}{r['copy'] * 1e3:>12.0f}")
    print(f"{'deferred (stall = call + next step wait)':<44}{r['async'] * 1e3:>12.0f}")
    print(f"{'  the save call':<44}{r['async_call'] * 1e3:>12.0f}")
    print(f"{'  the next optimizer.step waiting':<44}{r['async_step_wait'] * 1e3:>12.0f}")
    print(f"{'  its write in the thread':<44}{r['write'] * 1e3:>12.0f}")
    print(f"{'one step without a save (short clip)':<44}{r['step'] * 1e3:>12.0f}")
    print(f"stall ratio deferred / copy at the call: {r['async'] / r['copy']:.3f} "
          f"({r['copy'] / r['async']:.1f}x less); deferred / synchronous: "
          f"{r['async'] / r['sync']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
