"""Train-step benchmark of the models at ViT-B shapes (issues 2, 20): batch 2, 2 threads, CPU.

Prints seconds per train step (forward + backward + fused AdamW step; min and median of the
timed steps) of plain ViT, UniLearn (sparse MoAE) and ViT-MoE, and ratios measured in the same run,
interleaved round by round so that machine noise hits every variant alike:
  UniLearn / ViT (target <= 1.04; min / min and the median of per-round ratios), the previous
  MoAE dispatch (autograd's backward, kept in this script only) / `SlotAdapters`', dense / sparse
  MoAE, naive / SDPA attention (the naive one is written here), bf16 autocast / fp32,
  ViT-MoE / ViT, and with --videomae-repo VideoMAE's own ViT-B / ours (target >= 1.7). FLOPs
  per step come from torch's FlopCounterMode on the warm-up step; from them, the H100 MFU
  needed to run the paper's FERV39K fine-tuning in --h100-hours. --ratio-only times only the
  targets, in fp32 and (where bf16 is fast) in bf16 autocast, VideoMAE's step included.

    python bench/model_step.py [--steps 2] [--threads 2] [--videomae-repo PATH] [--compile]
    python bench/model_step.py --ratio-only --steps 4 [--videomae-repo PATH]  # the targets only
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from unilearn.catalogue import gpu_peak_tflops
from unilearn.models import create_model
from unilearn.models.moae import MoAE
from unilearn.models.routing import dense_mixture, slot_table
from unilearn.models.vit import Attention

H100_BF16_DENSE_PEAK = gpu_peak_tflops("H100 SXM") * 1e12  # FLOP/s (the catalogue's table)
FERV39K_TRAIN_CLIPS = 31_088  # official train split (unilearn/doctor/official_split_counts.json)
PAPER_EPOCHS = 100


# FlopCounterMode has no formula for the CPU flash-attention kernels SDPA uses here, so it would
# count attention as free. Count them as the naive matmuls: 2 bmm forward, 4 backward (model
# FLOPs, no recomputation), the same as the naive variant is counted.
def _sdpa_cpu_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _sdpa_cpu_backward_flops(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return 2 * sdpa_flop_count(q, k, v)


FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flops,
}


# -- variants that the bench switches on existing models ------------------------------------------
def naive_attention(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v written out, as VideoMAE's Attention computes it."""
    B, N, C = x.shape
    bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
    qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (C // self.num_heads) ** -0.5) @ k.transpose(-2, -1)
    x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
    return self.proj(x)


@contextlib.contextmanager
def patched(model: torch.nn.Module, cls: type, method: Callable) -> Iterator[None]:
    """Replace `forward` of every `cls` module in `model` by `method` for the block's duration."""
    modules = [m for m in model.modules() if isinstance(m, cls)]
    for m in modules:
        m.forward = types.MethodType(method, m)
    try:
        yield
    finally:
        for m in modules:
            del m.forward


def previous_moae(self: MoAE, x: torch.Tensor) -> torch.Tensor:
    """The batched capacity dispatch before `SlotAdapters` (kept here only, for the before/after
    ratio): the same slots and ops, differentiated by autograd, whose weight gradients come out
    as transposed views that each `AccumulateGrad` copies."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    routing = self.gate(x)
    experts = list(self.experts)
    out = routing.dense(len(experts)).to(x.dtype) @ torch.stack([e.fc2.bias for e in experts])
    rows, w = slot_table(routing, len(experts))
    n, s = rows.shape
    chunk = x.index_select(0, rows.reshape(-1)).view(n, s, -1)
    w1 = torch.stack([e.fc1.weight for e in experts]).transpose(1, 2)
    b1 = torch.stack([e.fc1.bias for e in experts]).unsqueeze(1)
    w2 = torch.stack([e.fc2.weight for e in experts]).transpose(1, 2)
    hidden = F.gelu(torch.baddbmm(b1, chunk, w1))
    y = torch.bmm(hidden * w.to(hidden.dtype), w2)
    out.index_add_(0, rows.reshape(-1), y.reshape(n * s, -1).to(out.dtype))
    return out.reshape(shape)


def dense_moae(self: MoAE, x: torch.Tensor) -> torch.Tensor:
    """MoAE through `dense_mixture`: all n adapters on every token, weighted by the dense G(x)."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    gates = self.gate(x).dense(self.n_experts).to(x.dtype)
    return dense_mixture(x, gates, list(self.experts)).reshape(shape)


# -- one train step --------------------------------------------------------------------------------
class Variant:
    """A named way to run a train step on a model (with optional patches / autocast)."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        batch: int,
        frames: int,
        size: int,
        context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        bf16: bool = False,
        has_task: bool = True,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.name, self.model, self.context, self.bf16, self.has_task = (
            name,
            model,
            context,
            bf16,
            has_task,
        )
        self.x = torch.randn(batch, 3, frames, size, size)
        self.y = torch.randint(0, 7, (batch,))
        self.optimizer = optimizer or adamw(model)
        self.times: list[float] = []
        self.flops: int | None = None

    def step(self) -> None:
        self.model.train()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with self.context(), autocast:
            logits = self.model(self.x, task="dfer") if self.has_task else self.model(self.x)
            loss = F.cross_entropy(logits.float(), self.y)
            if hasattr(self.model, "aux_loss"):
                loss = loss + self.model.aux_loss()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def warmup(self) -> None:
        with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
            self.step()
        self.flops = counter.get_total_flops()

    def timed(self) -> None:
        start = time.perf_counter()
        self.step()
        self.times.append(time.perf_counter() - start)

    @property
    def seconds(self) -> float:
        # the minimum: on a shared machine, interference only ever adds time
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def paired_ratio(a: Variant, b: Variant) -> float:
    """Median over rounds of a's step time / b's step time in the same round: the two steps ran
    back to back, so a slow spell of the shared machine hits both (steadier than min / min)."""
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def _both_ratios(name: str, a, b, target: str, paired: str = "paired") -> list[tuple]:
    """`a / b` as min / min and as the median of per-round ratios (`paired_ratio`), `name`'s
    `{}` filled with which."""
    return [(name.format("min / min"), a.seconds / b.seconds, target),
            (name.format(paired), paired_ratio(a, b), target)]  # fmt: skip


def run_interleaved(variants: list[Variant], steps: int) -> None:
    for v in variants:
        t = time.perf_counter()
        v.warmup()
        print(f"  warm-up {v.name:<28} {time.perf_counter() - t:6.2f} s", file=sys.stderr)
    for _ in range(steps):  # round robin: noise spreads over all variants alike
        for v in variants:
            v.timed()


def videomae_model(repo: str, frames: int, size: int) -> torch.nn.Module:
    """VideoMAE's own ViT-B fine-tune model from a local checkout (never vendored here)."""
    sys.path.insert(0, repo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modeling_finetune  # type: ignore[import-not-found]
    return modeling_finetune.VisionTransformer(
        img_size=size, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
        qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_classes=7,
        all_frames=frames, tubelet_size=2, use_mean_pooling=True,
    )  # fmt: skip


def videomae_variant(
    repo: str, frames: int, size: int, name: str = "VideoMAE's ViT-B + AdamW", **common
) -> Variant:
    """VideoMAE's own step: its model and torch's default AdamW (what its code runs)."""
    reference = videomae_model(repo, frames, size)
    return Variant(name, reference, has_task=False, optimizer=adamw(reference, fused=False),
                   frames=frames, size=size, **common)  # fmt: skip


def ratio_only(args, shape: dict, common: dict, bf16: bool) -> None:
    """The issue's targets, in fp32 and (with fast bf16) in bf16 autocast, all variants
    interleaved round by round in this process: UniLearn / ViT (<= 1.04), the previous
    dispatch (autograd's backward) / `SlotAdapters`', VideoMAE's step / ours (>= 1.7)."""
    vit = create_model("vit_base_patch16_160", **shape)
    unilearn = create_model("unilearn_base_patch16_160", **shape)
    v_opt, u_opt = adamw(vit), adamw(unilearn)
    previous = partial(patched, unilearn, MoAE, previous_moae)
    reference = videomae_model(args.videomae_repo, args.frames, args.size) if args.videomae_repo else None  # fmt: skip
    r_opt = adamw(reference, fused=False) if reference is not None else None
    precisions = [("fp32", False)] + ([("bf16", True)] if bf16 else [])
    variants: dict[str, Variant] = {}
    for tag, half in precisions:
        variants[f"vit {tag}"] = Variant(f"ViT (SDPA) {tag}", vit, optimizer=v_opt, bf16=half, **common)  # fmt: skip
        variants[f"unilearn {tag}"] = Variant(f"UniLearn {tag}", unilearn, optimizer=u_opt, bf16=half, **common)  # fmt: skip
        variants[f"previous {tag}"] = Variant(f"UniLearn, previous dispatch {tag}", unilearn, optimizer=u_opt, context=previous, bf16=half, **common)  # fmt: skip
        if reference is not None:
            variants[f"videomae {tag}"] = Variant(f"VideoMAE's ViT-B {tag}", reference, has_task=False, optimizer=r_opt, bf16=half, **common)  # fmt: skip
    run_interleaved(list(variants.values()), args.steps)
    v = variants
    ratios = []
    for tag, _ in precisions:
        ratios += [
            *_both_ratios(
                f"UniLearn / ViT, {{}}, {tag}",
                v[f"unilearn {tag}"],
                v[f"vit {tag}"],
                "<= 1.04",
                paired="paired median",
            ),  # fmt: skip
            (
                f"previous UniLearn / ViT, paired, {tag}",
                paired_ratio(v[f"previous {tag}"], v[f"vit {tag}"]),
                "(before)",
            ),  # fmt: skip
            (
                f"previous / current dispatch, paired, {tag}",
                paired_ratio(v[f"previous {tag}"], v[f"unilearn {tag}"]),
                "> 1",
            ),  # fmt: skip
        ]
        if reference is not None:
            ratios += _both_ratios(f"VideoMAE / ours (ViT), {{}}, {tag}", v[f"videomae {tag}"],
                                   v[f"vit {tag}"], ">= 1.7")  # fmt: skip
    ratios.append(("UniLearn / ViT FLOPs", v["unilearn fp32"].flops / v["vit fp32"].flops, "(MoAE share)"))  # fmt: skip
    report(list(v.values()), ratios)


def target_ratios(
    vit: Variant, unilearn: Variant, videomae: Variant | None
) -> list[tuple[str, float, str]]:
    """The issue's two targets: UniLearn / ViT <= 1.04 and VideoMAE / ours (ViT) >= 1.7."""
    rows = [
        ("UniLearn / ViT step time, min / min", unilearn.seconds / vit.seconds, "<= 1.04"),
        ("UniLearn / ViT step time, paired median", paired_ratio(unilearn, vit), "<= 1.04"),
        ("UniLearn / ViT FLOPs", unilearn.flops / vit.flops, "(MoAE share)"),
    ]
    if videomae is not None:
        rows += [
            ("VideoMAE step / ours (ViT), min / min", videomae.seconds / vit.seconds, ">= 1.7"),
            ("VideoMAE step / ours (ViT), paired median", paired_ratio(videomae, vit), ">= 1.7"),
        ]
    return rows


def report(rows: list[Variant], ratios: list[tuple[str, float, str]]) -> None:
    print(f"\n{'variant':<30}{'min s/step':>11}{'median':>8}{'GFLOP/step':>12}")
    for v in rows:
        print(f"{v.name:<30}{v.seconds:>11.2f}{v.median:>8.2f}{(v.flops or 0) / 1e9:>12.0f}")
    print(f"\n{'ratio':<42}{'value':>7}  target")
    for name, value, target in ratios:
        print(f"{name:<42}{value:>7.3f}  {target}")


def adamw(model: torch.nn.Module, fused: bool = True) -> torch.optim.Optimizer:
    # fused AdamW runs ~5x faster than the default per-tensor loop on CPU (see adamw_step_times)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)


def adamw_step_times(model: torch.nn.Module) -> tuple[float, float]:
    """Seconds of one AdamW step over `model`'s parameters: torch's default, then fused."""
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    times = []
    for fused in (False, True):
        optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
        optimizer.step()  # creates the state
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            optimizer.step()
            samples.append(time.perf_counter() - start)
        times.append(min(samples))
    for p in params:
        p.grad = None
    return times[0], times[1]


def bf16_gemm_speedup(n: int = 800, d: int = 768) -> float:
    """fp32 time / bf16-autocast time of one ViT-B-sized linear layer (fwd + bwd). CPUs without
    native bf16 (AVX2 only) emulate it and run many times slower than fp32."""
    layer = torch.nn.Linear(d, d)
    x = torch.randn(n, d, requires_grad=True)

    def once(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().sum().backward()
        return time.perf_counter() - start

    once(False), once(True)  # warm-up
    return min(once(False) for _ in range(3)) / min(once(True) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant (+1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--videomae-repo", help="local VideoMAE checkout: also time its own ViT-B")
    parser.add_argument(
        "--bf16", action="store_true", help="time bf16 steps even without fast bf16"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(ViT)")
    parser.add_argument(
        "--ratio-only",
        action="store_true",
        help="time only ViT, UniLearn (and VideoMAE with --videomae-repo): the two targets, "
        "with enough --steps for paired ratios",
    )
    parser.add_argument("--h100-hours", type=float, default=1.0, help="budget for the MFU estimate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # no stochastic depth, as VideoMAE's reference model is built (its default drop path is 0)
    shape = dict(num_frames=args.frames, img_size=args.size, drop_path_rate=0.0)
    common = dict(batch=args.batch, frames=args.frames, size=args.size)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
        f"{args.frames}x{args.size}^2, fp32 unless noted; min (and median) of {args.steps} "
        "timed steps",
        file=sys.stderr,
    )
    bf16_speedup = bf16_gemm_speedup()
    print(
        f"bf16 autocast probe: a linear layer runs at {bf16_speedup:.2f}x fp32 speed",
        file=sys.stderr,
    )

    if args.ratio_only:
        ratio_only(args, shape, common, bf16=bf16_speedup > 1 or args.bf16)
        return
    # Phase 1: ViT, UniLearn and their variants (+ VideoMAE), interleaved.
    vit = create_model("vit_base_patch16_160", **shape)
    unilearn = create_model("unilearn_base_patch16_160", **shape)
    probe = create_model("vit_base_patch16_160", **shape)
    adamw_default, adamw_fused = adamw_step_times(probe)
    del probe
    print(
        f"AdamW step, ViT-B: default {adamw_default:.3f} s, fused {adamw_fused:.3f} s",
        file=sys.stderr,
    )
    v_opt, u_opt = adamw(vit), adamw(unilearn)
    variants = {
        "vit": Variant("ViT (SDPA)", vit, optimizer=v_opt, **common),
        "vit_naive": Variant(
            "ViT, naive attention", vit, optimizer=v_opt,
            context=partial(patched, vit, Attention, naive_attention), **common,
        ),
        "unilearn": Variant("UniLearn (sparse MoAE)", unilearn, optimizer=u_opt, **common),
        "unilearn_previous": Variant(
            "UniLearn, previous dispatch", unilearn, optimizer=u_opt,
            context=partial(patched, unilearn, MoAE, previous_moae), **common,
        ),
        "unilearn_dense": Variant(
            "UniLearn, dense MoAE", unilearn, optimizer=u_opt,
            context=partial(patched, unilearn, MoAE, dense_moae), **common,
        ),
    }  # fmt: skip
    if bf16_speedup > 1 or args.bf16:
        variants["vit_bf16"] = Variant(
            "ViT bf16 autocast", vit, optimizer=v_opt, bf16=True, **common
        )
        variants["unilearn_bf16"] = Variant(
            "UniLearn bf16 autocast", unilearn, optimizer=u_opt, bf16=True, **common
        )
    else:
        print("bf16 train steps skipped: no fast bf16 on this CPU (--bf16 forces)", file=sys.stderr)
    if args.videomae_repo:
        variants["videomae"] = videomae_variant(args.videomae_repo, **common)
    if args.compile:
        compiled = torch.compile(vit)
        variants["vit_compiled"] = Variant("ViT torch.compile", compiled, optimizer=v_opt, **common)
    run_interleaved(list(variants.values()), args.steps)
    for key, variant in variants.items():  # free UniLearn / VideoMAE before the 285M ViT-MoE
        if key != "vit":
            variant.model = variant.optimizer = None
    del unilearn, u_opt
    gc.collect()

    # Phase 2: ViT-MoE (285M parameters) against the same ViT, interleaved.
    vit_moe = create_model("vit_moe_base_patch16_160", **shape)
    phase2 = [
        Variant("ViT (SDPA), phase 2", vit, optimizer=v_opt, **common),
        Variant("ViT-MoE", vit_moe, **common),
    ]
    run_interleaved(phase2, args.steps)

    v = variants
    ratios = target_ratios(v["vit"], v["unilearn"], v.get("videomae")) + [
        ("dense / sparse MoAE step time", v["unilearn_dense"].seconds / v["unilearn"].seconds, "> 1"),
        ("previous / current dispatch, paired", paired_ratio(v["unilearn_previous"], v["unilearn"]), "> 1"),
        ("naive / SDPA attention step time", v["vit_naive"].seconds / v["vit"].seconds, "> 1"),
        ("ViT-MoE / ViT step time (phase 2)", phase2[1].seconds / phase2[0].seconds, ""),
        ("ViT-MoE / ViT FLOPs", phase2[1].flops / phase2[0].flops, ""),
        ("fp32 / bf16 time of one linear layer", bf16_speedup, "> 1 if native bf16"),
        ("default / fused AdamW step time (ViT-B)", adamw_default / adamw_fused, "> 1"),
    ]  # fmt: skip
    optional = [
        ("vit_bf16", "ViT fp32 / bf16-autocast step time", "vit", "vit_bf16", "> 1"),
        ("unilearn_bf16", "UniLearn fp32 / bf16 step time", "unilearn", "unilearn_bf16", "> 1"),
        ("videomae", "VideoMAE step / ours (UniLearn)", "videomae", "unilearn", ""),
        ("vit_compiled", "ViT eager / torch.compile step time", "vit", "vit_compiled", "> 1"),
    ]
    for key, name, num, den, target in optional:
        if key in v:
            ratios.append((name, v[num].seconds / v[den].seconds, target))
    report([*v.values(), *phase2], ratios)

    flops_per_clip = v["unilearn"].flops / args.batch
    total = flops_per_clip * FERV39K_TRAIN_CLIPS * PAPER_EPOCHS
    mfu = total / (args.h100_hours * 3600) / H100_BF16_DENSE_PEAK
    print(
        f"\nUniLearn train step: {flops_per_clip / 1e9:.0f} GFLOP per clip (fwd+bwd). The paper's "
        f"FERV39K fine-tuning ({FERV39K_TRAIN_CLIPS} clips x {PAPER_EPOCHS} epochs = "
        f"{total / 1e15:.0f} PFLOP) in {args.h100_hours:g} h on one H100 needs MFU {mfu:.1%} "
        f"(bf16 dense peak {H100_BF16_DENSE_PEAK / 1e12:.0f} TFLOP/s); at 40% MFU an H100 "
        f"trains {0.4 * H100_BF16_DENSE_PEAK / flops_per_clip:.0f} clips/s."
    )


if __name__ == "__main__":
    main()
