"""One-GPU readiness check, one prepared script in under 5 minutes: at the paper's shapes
(configs/paper.yaml: ViT-B, 16 x 160^2, bf16 autocast) it prints

  1. step time and MFU of the ViT and UniLearn fine-tuning steps (batch `finetune.batch_size`)
     and the MAE pre-training step (`pretrain.batch_size` views, each decoded clip cut into
     `pretrain.repeated_views` views on the device when `pretrain.crop_on_device`), each through
     the engine's own train step (fused AdamW, no per-step host sync);
  2. the fine-tuning loader's clips/s and the pre-training loader's views/s per CPU core (full
     augmentation, from a small generated clip store; the fine-tuning one also through a
     DataLoader with workers) against what the GPU consumes (items per second of the steps of
     1): the CPU cores it takes to feed the GPU;
  3. the step-loop stall of one `last.pt` save (UniLearn state) against a synchronous save, and
     how much longer the next step takes with the save in flight (on CUDA: the copy to pinned
     memory on a side stream delays the step's kernels, not the host).

    python bench/gpu.py                  # CUDA: the paper shape
    python bench/gpu.py --dry-run        # tiny models, clips and steps (the default without CUDA;
                                         # tests/test_bench_gpu.py runs it on CPU)
    python bench/gpu.py --json out.json  # the numbers as JSON too

Times are taken between `torch.cuda.synchronize()` calls. FLOPs per step come from torch's
FlopCounterMode on the first (untimed) step: model FLOPs, forward + backward. MFU = FLOPs per
second / the device's bf16 dense peak, from the catalogue's table by device name (the one the
Slurm time estimate reads; `--peak-tflops` for a device not in it); `n/a` without a peak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from checkpoint_stall import checkpoint_stall  # noqa: E402
from model_step import FLOP_FORMULAS  # noqa: E402

from unilearn.catalogue import gpu_peak_tflops  # noqa: E402
from unilearn.config import load_config  # noqa: E402
from unilearn.data.transforms import ResizedCropPretrainTransform  # noqa: E402
from unilearn.engine import finetune, pretrain  # noqa: E402
from unilearn.engine.distributed import DistInfo, enable_tf32  # noqa: E402
from unilearn.engine.optim import build_optimizer  # noqa: E402
from unilearn.engine.step import StepContext  # noqa: E402
from unilearn.models import create_model  # noqa: E402

PAPER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "paper.yaml"


def shapes(tiny: bool) -> dict:
    """The shapes measured: the paper config's, or tiny ones (same code paths) for a dry run."""
    cfg = load_config(PAPER_CONFIG)
    m, ft, pt = cfg.model, cfg.finetune, cfg.pretrain
    paper = {
        "size": "base", "frames": m.num_frames, "img": m.input_size, "batch": ft.batch_size,
        "views": pt.repeated_views, "pretrain_batch": pt.batch_size,
        "crop_on_device": pt.crop_on_device and pt.augment == "resized" and pt.repeated_views > 1,
        "short_side": cfg.data.store.short_side, "video_short_side": pt.video_short_side,
        "video_crop_scale": tuple(pt.video_crop_scale),
    }  # fmt: skip
    if not tiny:
        return paper
    return paper | {"size": "tiny", "frames": 8, "img": 64, "batch": 2, "views": 2,
                    "pretrain_batch": 4, "short_side": 72}  # fmt: skip


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """bf16 dense peak FLOP/s: `override_tflops`, else the catalogue's entry of a CUDA device."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    peak = gpu_peak_tflops(torch.cuda.get_device_name(device))
    return peak * 1e12 if peak else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mae_batch(shape: dict, device: torch.device) -> dict:
    """A video batch as the pre-training loader ships it: `pretrain_batch` views, either cut in
    the loader (uint8 `[B, 3, T, S, S]`) or, with `crop_on_device`, each decoded clip once
    (`[B / views, T, H, W, 3]` at the store's short side) with its views' boxes and flips."""
    b, t, s, k = shape["pretrain_batch"], shape["frames"], shape["img"], shape["views"]
    if not shape["crop_on_device"]:
        return {"x": torch.randint(0, 256, (b, 3, t, s, s), dtype=torch.uint8, device=device)}
    h = w = shape["short_side"]
    aug = ResizedCropPretrainTransform(s, shape["video_crop_scale"],
                                       short_side=round(shape["video_short_side"] * s))  # fmt: skip
    rng = random.Random(0)
    views = [aug.box(h, w, rng) for _ in range(b)]
    return {
        "x": torch.randint(0, 256, (b // k, t, h, w, 3), dtype=torch.uint8, device=device),
        "boxes": torch.tensor([box for box, _ in views], dtype=torch.int32),
        "flip": torch.tensor([flip for _, flip in views]),
        "views": k,
    }


def step_bench(arch: str, shape: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """Seconds per engine train step, FLOPs per step and items (clips or views) per step."""
    torch.manual_seed(0)
    name = f"{arch}_{shape['size']}_patch16_{shape['img']}"
    kwargs = {"num_frames": shape["frames"], "img_size": shape["img"]}
    if arch != "mae":
        kwargs.update(num_classes=7, num_classes_sfer=7)
    model = create_model(name, **kwargs).to(device).train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05)
    ctx = StepContext(optimizer, lambda step: 1e-4, device, DistInfo(device=device),
                      autocast_dtype=torch.bfloat16)  # fmt: skip
    if arch == "mae":
        batch, items = {"modality": "video", **mae_batch(shape, device)}, shape["pretrain_batch"]
    else:
        b, t, s = shape["batch"], shape["frames"], shape["img"]
        batch = {
            "task": "dfer",
            "x": torch.randint(0, 256, (b, 3, t, s, s), dtype=torch.uint8, device=device),
            "y": torch.randint(0, 7, (b,), device=device),
        }
        items = b
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
    return {"name": name, "seconds": seconds, "flops": flops, "items": items,
            "model": model, "opt": optimizer}  # fmt: skip


def loader_bench(shape: dict, tiny: bool, workers: int) -> dict:
    """Per CPU core (CPU seconds of this process): fine-tuning clips/s (full augmentation) and
    pre-training views/s (repeated views, cut as the paper config cuts them) from a generated
    DFEW-like store; and fine-tuning clips/s through a DataLoader with `workers` workers."""
    import cv2
    import loader as loader_bench_module

    from unilearn.data.clip_dataset import ClipDataset
    from unilearn.data.preprocess import PreprocessSettings, preprocess
    from unilearn.data.store import load_store_table

    clips, frames = (2, 36) if tiny else (16, 80)
    items = 6 if tiny else 160
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            manifest = loader_bench_module.make_inputs(root, clips, frames)
            settings = PreprocessSettings(
                short_side=shape["short_side"], frame_stride=1, framing="default", codec="jpeg"
            )
            preprocess(manifest, root / "store", settings, workers=0, progress=False)
            table = load_store_table(root / "store", "dfew", 1, "train")
            dataset = ClipDataset(root / "store", table, mode="train", num_frames=shape["frames"],
                                  input_size=shape["img"], frame_stride=4,
                                  transform=loader_bench_module.train_transform(shape["img"]))  # fmt: skip
            _, finetune_per_core = loader_bench_module.rate(
                lambda i: dataset[(i, i)], items, len(table)
            )
            multi = loader_bench_module.loader_rate(dataset, items, workers) if workers else None
            views = loader_bench_module.pretrain_rates(
                root / "store", table, items, shape["views"], on_device=shape["crop_on_device"]
            )["views_per_cpu_s"]
    finally:
        torch.set_num_threads(threads)
    return {"finetune_per_core": finetune_per_core, "workers": workers, "finetune_workers": multi,
            "pretrain_per_core": views}  # fmt: skip


def feeding(demand: float, per_core: float) -> dict:
    """What the GPU consumes (items/s) against one core's supply: the cores it takes."""
    return {"demand": demand, "per_core": per_core, "cores_needed": demand / per_core}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", "--tiny", dest="tiny", action="store_true",
                    help="tiny shapes and 2 timed steps (the default when there is no CUDA)")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="timed steps per model")
    ap.add_argument(
        "--workers", type=int, default=None, help="loader workers (default: cores - 1, <= 8)"
    )
    ap.add_argument("--models", default="vit,unilearn,mae")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="bf16 dense peak of the device (default: the catalogue's, by name)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    shape = shapes(tiny)
    steps = args.steps or (2 if tiny else 10)
    cores = os.cpu_count() or 1
    default_workers = 0 if tiny else min(8, max(cores - 1, 0))
    workers = args.workers if args.workers is not None else default_workers
    if tiny:
        torch.set_num_threads(1)  # tiny ops: a thread pool only adds barriers
    if device.type == "cuda":
        enable_tf32()
    peak = peak_flops(device, args.peak_tflops)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cores} cores)"
    print(f"unilearn bench/gpu: {where}, torch {torch.__version__}, bf16 autocast, "
          f"{'tiny' if tiny else 'paper'} shape {shape['size']} {shape['frames']}x{shape['img']}^2, "
          f"fine-tune batch {shape['batch']}, pre-train {shape['pretrain_batch']} views "
          f"({shape['views']} per clip, cut {'on the device' if shape['crop_on_device'] else 'in the loader'}), "
          f"{steps} timed steps, peak {f'{peak / 1e12:.4g} TFLOP/s' if peak else 'unknown'}",
          flush=True)  # fmt: skip

    results: dict = {"device": where, "tiny": tiny, "peak_flops": peak, "steps": {}}
    last = None
    for arch in args.models.split(","):
        r = step_bench(arch, shape, device, steps, warmup=1 if tiny else 3)
        results["steps"][arch] = {
            "seconds": r["seconds"], "flops": r["flops"], "items": r["items"],
            "items_per_s": r["items"] / r["seconds"],
            "mfu": r["flops"] / r["seconds"] / peak if peak else None,
        }  # fmt: skip
        if arch == "unilearn" or last is None:
            last = r
        else:
            del r
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\n{'model':<10}{'s/step':>9}{'GFLOP/step':>12}{'items/s':>9}{'MFU':>7}")
    for arch, r in results["steps"].items():
        shown = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{arch:<10}{r['seconds']:>9.3f}{r['flops'] / 1e9:>12.1f}"
              f"{r['items_per_s']:>9.1f}{shown:>7}")  # fmt: skip

    ld = loader_bench(shape, tiny, workers)
    consumers = {"finetune": ("unilearn", "vit"), "pretrain": ("mae",)}
    results["loader"] = {"workers": workers, "finetune_workers": ld["finetune_workers"]}
    print("\nloaders (full augmentation, CPU seconds of one core) against what the GPU consumes:")
    for stage, what in (("finetune", "clips"), ("pretrain", "views")):
        arch = next((a for a in consumers[stage] if a in results["steps"]), None)
        if arch is None:
            continue
        f = feeding(results["steps"][arch]["items_per_s"], ld[f"{stage}_per_core"])
        results["loader"][stage] = f | {"consumer": arch}
        print(f"  {stage:<9} {f['per_core']:7.1f} {what}/s per core; the {arch} step takes "
              f"{f['demand']:7.1f} {what}/s: needs {math.ceil(f['cores_needed'])} core(s) "
              f"({cores} here)")  # fmt: skip
    if ld["finetune_workers"]:
        print(
            f"  finetune  {ld['finetune_workers']:7.1f} clips/s through {workers} DataLoader workers"
        )

    with tempfile.TemporaryDirectory() as tmp:
        ck = checkpoint_stall(last["model"], last["opt"], Path(tmp), repeats=2, device=device)
    results["checkpoint"] = ck | {"model": last["name"]}
    print(f"\ncheckpoint ({last['name']}, {ck['bytes'] / 1e9:.2f} GB, {device.type}): step-loop stall "
          f"{ck['async'] * 1e3:.0f} ms background vs {ck['sync'] * 1e3:.0f} ms synchronous "
          f"({ck['write'] * 1e3:.0f} ms write in the thread); the next step "
          f"{ck['async_step'] * 1e3:.0f} ms with the save in flight vs {ck['step'] * 1e3:.0f} ms")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
