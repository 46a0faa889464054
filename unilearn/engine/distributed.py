"""torch.distributed for the engines: process rank and world size from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or from Slurm's (SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID, master = first host of SLURM_JOB_NODELIST); NCCL on CUDA, gloo on CPU; rank-0-only
writes; metric reduction across ranks; TF32 matmuls on CUDA; the opt-in `torch.compile`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None = single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """The first host of a Slurm nodelist: `gpu[03-05,07],cpu1` -> `gpu03` (as `scontrol show
    hostnames` would print first; parsed here so no Slurm binary is needed on the node)."""
    nodelist = nodelist.strip()
    match = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not match:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot parse a host name")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}"


def env_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's or Slurm's environment; (0, 1, 0) alone.

    torchrun wins when both are set (torchrun inside a Slurm job). Under Slurm, also fills
    MASTER_ADDR/MASTER_PORT for `init_method="env://"` when they are not set."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local = int(env.get("SLURM_LOCALID", 0))
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost"
        env.setdefault("MASTER_ADDR", first_host(nodelist))
        # One port per job, so two jobs sharing a node do not collide.
        env.setdefault("MASTER_PORT", str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return rank, world, local
    return 0, 1, 0


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device=cuda but CUDA is not available on this machine")
        enable_tf32()
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def enable_tf32() -> None:
    """fp32 matmuls and convolutions on tensor cores (TF32) on CUDA; under bf16 autocast it
    covers what autocast leaves in fp32. CPU matmuls are not affected."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched with several ranks; pick this rank's device."""
    rank, world, local = env_rank()
    dev = resolve_device(device, local)
    if world == 1:
        return DistInfo(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


def wrap(
    model: torch.nn.Module,
    info: DistInfo,
    find_unused_parameters: bool = False,
    compile: bool = False,
):
    """The model under DistributedDataParallel when there are several ranks, else itself;
    under `torch.compile` when `compile` (`runtime.compile`; DDP first, so that compile splits
    the graph at DDP's gradient buckets). Checkpoints are always written from the bare model."""
    if info.distributed:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )
    return torch.compile(model) if compile else model


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def _all_reduce(values: torch.Tensor, info: DistInfo, op) -> torch.Tensor:
    """`op` of a tensor over ranks, as a CPU copy (the input is left alone)."""
    out = values.detach().clone()
    if info.distributed:
        # gloo reduces CPU tensors, NCCL CUDA ones
        out = out.to(info.device)
        dist.all_reduce(out, op=op)
    return out.cpu()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of a tensor over ranks (a CPU copy)."""
    return _all_reduce(values, info, dist.ReduceOp.SUM)


def all_reduce_min(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise minimum of a tensor over ranks (a CPU copy)."""
    return _all_reduce(values, info, dist.ReduceOp.MIN)


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's `flag` on every rank (one tiny broadcast; call it at the same step everywhere)."""
    if not info.distributed:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=info.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def reduce_mean(metrics: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean of scalar metrics over ranks (each rank contributes equally)."""
    if not info.distributed or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    summed = all_reduce_sum(
        torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64), info
    )
    return {k: float(v) / info.world_size for k, v in zip(keys, summed.tolist())}


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (pickled; for predictions and small tables)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `runtime.precision` (None = fp32): auto = bf16 on CUDA, fp32 on CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def set_threads(threads: int | None) -> None:
    """torch intra-op threads (`runtime.threads`); None leaves torch's default."""
    if threads:
        torch.set_num_threads(threads)
