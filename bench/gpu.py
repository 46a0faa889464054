"""One-GPU check of the training step, in under 5 minutes: step time and MFU of ViT, UniLearn
and the MAE at the paper's shape (ViT-B, 16 x 160^2, batch 16, bf16 autocast), each through the
engine's own train step (fused AdamW, no per-step host sync); training-loader clips/s from a
small generated clip store; and the step-loop stall of one `last.pt` save (UniLearn state).

    python bench/gpu.py                 # CUDA: the paper shape
    python bench/gpu.py --tiny          # tiny models and clips (the default without CUDA; CI)

Times are taken between `torch.cuda.synchronize()` calls. FLOPs per step come from torch's
FlopCounterMode on the first (untimed) step: model FLOPs, forward + backward. MFU = FLOPs per
second / the device's bf16 dense peak, looked up by device name (H100 / H200 / A100); `n/a`
for other devices and on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from checkpoint_stall import checkpoint_stall  # noqa: E402
from model_step import FLOP_FORMULAS  # noqa: E402

from unilearn.engine import finetune, pretrain  # noqa: E402
from unilearn.engine.distributed import DistInfo, enable_tf32  # noqa: E402
from unilearn.engine.optim import build_optimizer  # noqa: E402
from unilearn.engine.step import StepContext  # noqa: E402
from unilearn.models import create_model  # noqa: E402

# bf16 dense tensor-core peak, FLOP/s (vendor data sheets, no sparsity); first match wins
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
)
PAPER = {"size": "base", "frames": 16, "img": 160, "batch": 16}
TINY = {"size": "tiny", "frames": 8, "img": 64, "batch": 2}


def peak_for_name(name: str) -> float | None:
    """bf16 dense peak FLOP/s of a CUDA device by its name (`torch.cuda.get_device_name`)."""
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_bench(arch: str, shape: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """Seconds per engine train step and FLOPs per step of one architecture."""
    torch.manual_seed(0)
    name = f"{arch}_{shape['size']}_patch16_{shape['img']}"
    kwargs = {"num_frames": shape["frames"], "img_size": shape["img"]}
    if arch != "mae":
        kwargs.update(num_classes=7, num_classes_sfer=7)
    model = create_model(name, **kwargs).to(device).train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05)
    ctx = StepContext(optimizer, lambda step: 1e-4, device, DistInfo(device=device),
                      autocast_dtype=torch.bfloat16)  # fmt: skip
    b, t, s = shape["batch"], shape["frames"], shape["img"]
    batch = {
        "task": "dfer",
        "x": torch.randint(0, 256, (b, 3, t, s, s), dtype=torch.uint8, device=device),
        "y": torch.randint(0, 7, (b,), device=device),
    }
    criteria, mixups = {"dfer": torch.nn.CrossEntropyLoss()}, {}

    def step(i: int) -> None:
        if arch == "mae":
            pretrain.train_step(model, batch, i, ctx)
        else:
            finetune.train_step(model, batch, i, ctx, criteria, mixups)

    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        step(0)
    flops = counter.get_total_flops()
    for i in range(1, warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    ctx.finite.check()  # the run was finite (one read, after the timing)
    return {"name": name, "seconds": seconds, "flops": flops, "model": model, "opt": optimizer}


def loader_bench(tiny: bool, workers: int) -> dict:
    """Training clips/s (full augmentation) from a generated DFEW-like store: one process, and
    through a DataLoader with `workers` workers."""
    import cv2
    import loader as loader_bench_module

    from unilearn.data.clip_dataset import ClipDataset
    from unilearn.data.preprocess import PreprocessSettings, preprocess
    from unilearn.data.store_table import load_store_table

    clips, frames = (2, 36) if tiny else (16, 80)
    num_frames, size = (8, 64) if tiny else (16, 160)
    items = 6 if tiny else 160
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            manifest = loader_bench_module.make_inputs(root, clips, frames)
            settings = PreprocessSettings(short_side=loader_bench_module.SHORT_SIDE)
            preprocess(manifest, root / "store", settings, workers=0, progress=False)
            table = load_store_table(root / "store", "dfew", 1, "train")
            dataset = ClipDataset(root / "store", table, mode="train", num_frames=num_frames,
                                  input_size=size, frame_stride=4,
                                  randaug=loader_bench_module.RANDAUG)  # fmt: skip
            wall, _ = loader_bench_module.rate(lambda i: dataset[(i, i)], items, len(table))
            multi = loader_bench_module.loader_rate(dataset, items, workers) if workers else None
    finally:
        torch.set_num_threads(threads)
    return {"one_core": wall, "workers": workers, "multi": multi}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (default when no CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per model")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument(
        "--workers", type=int, default=None, help="loader workers (default: cores - 1, <= 8)"
    )
    ap.add_argument("--models", default="vit,unilearn,mae")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    shape = dict(TINY if tiny else PAPER)
    if args.batch:
        shape["batch"] = args.batch
    steps = args.steps or (2 if tiny else 10)
    default_workers = 0 if tiny else min(8, max((os.cpu_count() or 1) - 1, 0))
    workers = args.workers if args.workers is not None else default_workers
    if tiny:
        torch.set_num_threads(1)  # tiny ops: a thread pool only adds barriers
    if device.type == "cuda":
        enable_tf32()
    peak = peak_flops(device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(f"unilearn bench/gpu: {where}, torch {torch.__version__}, bf16 autocast, "
          f"{'tiny' if tiny else 'paper'} shape {shape['size']} {shape['frames']}x{shape['img']}^2, "
          f"batch {shape['batch']}, {steps} timed steps", flush=True)  # fmt: skip

    rows = []
    last = None
    for arch in args.models.split(","):
        r = step_bench(arch, shape, device, steps, warmup=1 if tiny else 3)
        mfu = r["flops"] / r["seconds"] / peak if peak else None
        rows.append((arch, r["seconds"], r["flops"], shape["batch"] / r["seconds"], mfu))
        if arch == "unilearn" or last is None:
            last = r
        else:
            del r
    print(f"\n{'model':<10}{'s/step':>9}{'GFLOP/step':>12}{'clips/s':>9}{'MFU':>7}")
    for arch, sec, flops, rate, mfu in rows:
        shown = f"{mfu:.1%}" if mfu is not None else "n/a"
        print(f"{arch:<10}{sec:>9.3f}{flops / 1e9:>12.1f}{rate:>9.1f}{shown:>7}")

    ld = loader_bench(tiny, workers)
    multi = f"{ld['multi']:.1f} with {ld['workers']} workers" if ld["multi"] else "no workers"
    print(
        f"\nloader (training clips, full augmentation): {ld['one_core']:.1f} clips/s on one core; {multi}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        ck = checkpoint_stall(last["model"], last["opt"], Path(tmp), repeats=2, device=device)
    print(f"checkpoint ({last['name']}, {ck['bytes'] / 1e9:.2f} GB): step-loop stall "
          f"{ck['async'] * 1e3:.0f} ms background vs {ck['sync'] * 1e3:.0f} ms synchronous "
          f"({ck['write'] * 1e3:.0f} ms write in the thread)")  # fmt: skip


if __name__ == "__main__":
    main()
