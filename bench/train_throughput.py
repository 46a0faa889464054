"""Training throughput on this machine, and the compute of the paper's Table 1 at scale.

Measures (CPU, in one run, so ratios are comparable on a noisy shared machine):
  1. fine-tune and pre-train steps (forward + backward + AdamW) in samples/s, for the demo
     shape, the registry's tiny shape and ViT-B/16 (16 x 160^2), fp32 vs bf16 autocast;
  2. the data loader's share of a fine-tuning step on a real clip store, once the loader is warm
     (target < 5%), through the engine's own epoch loop;
  3. FLOPs of one ViT-B sample (torch's FlopCounterMode) -> FLOPs of the full paper Table 1
     (UniLearn + VideoMAE rows: pre-training, 5 + 5 + 1 fine-tunes per row, 2-clip tests) ->
     H100-hours at 50% MFU (the derivation is printed and written up in docs/training.md).

    python bench/train_throughput.py [--store STORE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from unilearn.config import TimeEstimateConfig, load_config
from unilearn.engine.optim import build_optimizer
from unilearn.models import create_model

ROOT = Path(__file__).resolve().parents[1]
# FLOP/s and MFU of the time estimate's defaults (peak: the catalogue's table)
H100_BF16_DENSE = TimeEstimateConfig().gpu_peak_tflops * 1e12
MFU = TimeEstimateConfig().mfu

# Dataset sizes of the real protocol: the official split counts the doctor ships for the DFER
# sets; AffectNet and VoxCeleb2 as published (defined once, with the time-limit FLOP model).
from unilearn.launch.estimate import (  # noqa: E402
    AFFECTNET7_TRAIN,
    AFFECTNET_TRAIN,
    SPLIT_COUNTS_PATH,
    VOXCELEB2_DEV,
)


def _shapes(quick: bool) -> dict[str, dict]:
    demo = load_config(ROOT / "configs/demo.yaml")
    paper = load_config(ROOT / "configs/paper.yaml")
    shapes = {
        "demo": {"cfg": demo, "batch": 16, "steps": 10},
        "tiny": {"cfg": demo.with_overrides(["model.width=null", "model.heads=null", "model.input_size=64",
                                             "model.num_frames=8"]), "batch": 16, "steps": 6},
        "vit-b": {"cfg": paper, "batch": 2, "steps": 2 if quick else 3},
    }  # fmt: skip
    return shapes


def _time_steps(step, n: int) -> float:
    step()  # warm-up (allocations, oneDNN kernels)
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def finetune_step_rate(cfg, batch: int, steps: int, dtype: torch.dtype | None, video: bool = True):
    r = cfg.resolve_experiment("unilearn", "dfew")
    model = create_model(r.model_name, **r.model_kwargs).train()
    opt = build_optimizer(model, 1e-4, 0.05, layer_decay=0.75)
    t = cfg.model.num_frames if video else cfg.model.tubelet_size
    x = torch.randn(batch, 3, t, cfg.model.input_size, cfg.model.input_size)
    y = torch.randint(0, 7, (batch,))
    task = "dfer" if video else "sfer"

    def step():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = (
                torch.nn.functional.cross_entropy(model(x, task=task).float(), y) + model.aux_loss()
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / _time_steps(step, steps)


def pretrain_step_rate(cfg, batch: int, steps: int, dtype: torch.dtype | None, video: bool = True):
    name, kwargs = cfg.mae_spec()
    model = create_model(name, **kwargs).train()
    opt = build_optimizer(model, 1e-4, 0.05)
    t = cfg.model.num_frames if video else cfg.model.tubelet_size
    x = torch.randn(batch, 3, t, cfg.model.input_size, cfg.model.input_size)

    def step():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / _time_steps(step, steps)


def flops_per_sample(cfg) -> dict[str, float]:
    """Training (fwd + bwd) and test (fwd) FLOPs of one sample, counted by torch."""
    r = cfg.resolve_experiment("unilearn", "dfew")
    vit = create_model(r.model_name, **r.model_kwargs)
    vr = cfg.resolve_experiment("videomae", "dfew")
    plain = create_model(vr.model_name, **vr.model_kwargs)
    name, kwargs = cfg.mae_spec()
    mae = create_model(name, **kwargs)
    s, f, tb = cfg.model.input_size, cfg.model.num_frames, cfg.model.tubelet_size
    out = {}

    def count(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    for label, model, task in (("unilearn", vit, "dfer"), ("vit", plain, "dfer")):
        for kind, t in (("video", f), ("image", tb)):
            x = torch.randn(1, 3, t, s, s)
            head = task if kind == "video" else "sfer"
            if label == "vit" and kind == "image":
                continue
            out[f"finetune_{label}_{kind}"] = count(
                lambda m=model, x=x, h=head: m(x, task=h).sum().backward()
            )
            with torch.no_grad():
                out[f"test_{label}_{kind}"] = count(lambda m=model, x=x, h=head: m(x, task=h))
    for kind, t in (("video", f), ("image", tb)):
        x = torch.randn(1, 3, t, s, s)
        out[f"pretrain_{kind}"] = count(lambda x=x: mae(x)["loss"].backward())
    return out


def table1_flops(per: dict[str, float], cfg) -> tuple[float, list[str]]:
    """FLOPs of the paper's Table 1 (UniLearn and VideoMAE rows) and the lines of its derivation."""
    counts = json.loads(SPLIT_COUNTS_PATH.read_text())

    def n(dataset: str, split: str) -> list[int]:
        return [sum(v.values()) for k, v in counts[dataset].items() if k.endswith(split)]

    ep_pt, ep_ft, n_clips = cfg.pretrain.epochs, cfg.finetune.epochs, cfg.evaluate.n_clips
    sfer = cfg.finetune.sfer_proportion * AFFECTNET7_TRAIN
    lines, total = [], 0.0

    def add(what: str, samples: float, flops: float) -> None:
        nonlocal total
        total += samples * flops
        lines.append(
            f"  {what:<58} {samples:>14,.0f} x {flops / 1e9:8.1f} GFLOP = {samples * flops / 1e18:9.1f} EFLOP"
        )

    add(
        f"pre-train image+video: {ep_pt} ep x VoxCeleb2 videos",
        ep_pt * VOXCELEB2_DEV,
        per["pretrain_video"],
    )
    add(
        f"pre-train image+video: {ep_pt} ep x AffectNet images",
        ep_pt * AFFECTNET_TRAIN,
        per["pretrain_image"],
    )
    add(
        f"pre-train video (VideoMAE row): {ep_pt} ep x VoxCeleb2",
        ep_pt * VOXCELEB2_DEV,
        per["pretrain_video"],
    )
    dfer_train = sum(n("dfew", "train")) + sum(n("mafw", "train")) + sum(n("ferv39k", "train"))
    dfer_test = sum(n("dfew", "test")) + sum(n("mafw", "test")) + sum(n("ferv39k", "test"))
    runs = len(n("dfew", "train")) + len(n("mafw", "train")) + len(n("ferv39k", "train"))
    add(
        f"UniLearn fine-tune: {ep_ft} ep x DFER train clips, {runs} runs",
        ep_ft * dfer_train,
        per["finetune_unilearn_video"],
    )
    add(
        f"UniLearn fine-tune: {ep_ft} ep x {cfg.finetune.sfer_proportion:.0%} AffectNet-7, {runs} runs",
        ep_ft * sfer * runs,
        per["finetune_unilearn_image"],
    )
    add(
        f"VideoMAE fine-tune: {ep_ft} ep x DFER train clips, {runs} runs",
        ep_ft * dfer_train,
        per["finetune_vit_video"],
    )
    add(
        f"tests: {n_clips} clips x DFER test clips, both rows",
        2 * n_clips * dfer_test,
        (per["test_unilearn_video"] + per["test_vit_video"]) / 2,
    )
    return total, lines  # fmt: skip


def loader_share(store: Path, workers: int, prefetch: int, epochs: int = 3) -> dict[str, float]:
    """Fine-tune the demo config through the engine on a real store with `workers` DataLoader
    workers and a `prefetch`-deep background thread (0: none); the loader's share of step time
    (the loop's wait for the next batch) in the first and the last (warm) epoch."""
    import tempfile

    from unilearn.engine import finetune
    from unilearn.engine.loader import fetch_ahead

    overrides = [f"finetune.epochs={epochs}", "wandb.mode=disabled", f"data.num_workers={workers}"]
    cfg = load_config(ROOT / "configs/demo.yaml", overrides)
    build = finetune.finetune_data

    def with_prefetch(*args):
        data = build(*args)
        data.fetch_ahead = fetch_ahead(prefetch)
        return data

    finetune.finetune_data = with_prefetch
    try:
        with tempfile.TemporaryDirectory() as out:
            finetune.run(cfg, "unilearn", "dfew", 1, store, Path(out), progress=False)
            history = [json.loads(x) for x in (Path(out) / "log.jsonl").read_text().splitlines()]
    finally:
        finetune.finetune_data = build
    return {"data_share_warm": history[-1]["data_share"], "data_share_first": history[0]["data_share"],
            "samples_per_s": history[-1]["samples_per_s"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="clip store with DFEW + AffectNet-7 (demo)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer ViT-B steps")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers for part 2 (default: both 0, the demo config's, and 1)",
    )
    parser.add_argument("--skip-throughput", action="store_true", help="only parts 2 and 3")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")

    print("1. training throughput (samples/s; fine-tune = UniLearn with MoAE, pre-train = MAE)")
    print(f"{'shape':<7} {'stage':<9} {'input':<6} {'fp32':>8} {'bf16':>8} {'bf16/fp32':>10}")
    for name, s in ({} if args.skip_throughput else _shapes(args.quick)).items():
        for stage, fn in (("finetune", finetune_step_rate), ("pretrain", pretrain_step_rate)):
            for video in (True, False):
                fp32 = fn(s["cfg"], s["batch"], s["steps"], None, video)
                bf16 = fn(s["cfg"], s["batch"], s["steps"], torch.bfloat16, video)
                kind = "video" if video else "image"
                print(
                    f"{name:<7} {stage:<9} {kind:<6} {fp32:8.2f} {bf16:8.2f} {bf16 / fp32:9.2f}x",
                    flush=True,
                )

    if args.store is not None:
        print("\n2. data loader share of a fine-tuning step (demo config, engine loop; share = the "
              "loop's wait for the next batch, target < 5% once warm)")  # fmt: skip
        print(
            f"   {'workers':>7} {'prefetch thread':>15} {'first epoch':>11} {'warm epoch':>10} {'samples/s':>9}"
        )
        for workers in (0, 1) if args.workers is None else (args.workers,):
            for prefetch in (0, 2):
                share = loader_share(args.store, workers, prefetch)
                print(f"   {workers:>7} {prefetch or 'off':>15} {100 * share['data_share_first']:10.1f}% "
                      f"{100 * share['data_share_warm']:9.1f}% {share['samples_per_s']:9.1f}", flush=True)  # fmt: skip

    print("\n3. paper Table 1 (UniLearn + VideoMAE rows) at ViT-B/16, 16 x 160^2")
    paper = load_config(ROOT / "configs/paper.yaml")
    per = flops_per_sample(paper)
    for key, value in per.items():
        print(f"   {key:<26} {value / 1e9:8.1f} GFLOP per sample")
    total, lines = table1_flops(per, paper)
    print("\n".join(lines))
    hours = total / (H100_BF16_DENSE * MFU) / 3600
    print(f"   total {total / 1e18:.0f} EFLOP / ({H100_BF16_DENSE / 1e12:.0f} TFLOP/s x {MFU:.0%} MFU) "
          f"= {hours:,.0f} H100-hours")  # fmt: skip


if __name__ == "__main__":
    main()
