"""Step-loop stall per `last.pt` save: the synchronous save (serialise + write + rename in the
training thread, as the engine did) against the background one (`CheckpointWriter`: copy the
state to reused host buffers, then serialise and write in a thread), at the ViT-B UniLearn
size by default (101M parameters + AdamW moments: ~1.2 GB of state), measured in the same run.

The stall is the time the training thread spends in the save call. The first background save
allocates its host buffers (pinned on CUDA) and is reported apart; the steady state reuses them.
The background write itself is timed too (it must stay under the checkpoint interval).

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
from unilearn.engine.optim import build_optimizer
from unilearn.engine.train_state import CheckpointWriter, train_state
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


def checkpoint_stall(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    folder: Path,
    repeats: int = 3,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Seconds per save: `sync` (median), `async_first`, `async` (median of the later ones),
    `write` (background write, median) and the state's `bytes`."""
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
    writer = CheckpointWriter()
    stalls, writes = [], []
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        writer.save(path, train_state(**kwargs))  # what the training thread waits for
        stalls.append(time.perf_counter() - t)
        writer.wait()
        writes.append(time.perf_counter() - t)
    return {
        "sync": statistics.median(sync_times),
        "async_first": stalls[0],
        "async": statistics.median(stalls[1:]),
        "write": statistics.median(writes[1:]),
        "bytes": float(size),
    }


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
    print(f"{'save':<38}{'ms per save':>12}")
    print(f"{'synchronous (stall = whole write)':<38}{r['sync'] * 1e3:>12.0f}")
    print(f"{'background, first (allocates buffers)':<38}{r['async_first'] * 1e3:>12.0f}")
    print(f"{'background, steady (stall = copy)':<38}{r['async'] * 1e3:>12.0f}")
    print(f"{'  its write in the thread':<38}{r['write'] * 1e3:>12.0f}")
    print(f"stall ratio background / synchronous: {r['async'] / r['sync']:.3f} "
          f"({r['sync'] / r['async']:.0f}x less)")  # fmt: skip


if __name__ == "__main__":
    main()
