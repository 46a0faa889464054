"""The launcher's command-line flags and the Slurm request they resolve to (`SlurmSpec`).

The request comes from the config's `launcher.slurm` section as seen by one stage (a typed
`SlurmConfig`, whose defaults are the only ones); a `--slurm-*` flag overrides its key.

GPUs: a job runs one task per DDP rank (`tasks_per_node` per node), and each rank uses the one GPU
`cuda:LOCAL_RANK`. The config key `gpus_per_task` is how many GPUs each task is given: 1 on a GPU
stage, 0 on a CPU stage. Slurm is asked for them per node, `gpus_per_node = gpus_per_task x
tasks_per_node` (`gpus_per_node`), not per task, so every rank sees the node's GPUs; a
`gpus_per_task` above 1 reserves GPUs that no rank uses. `--slurm-gpus N` sets the per-node count
directly, with one task per GPU.

The CPU stages (doctor, manifest, preprocess) take the same `--launcher` and `--slurm-*` flags,
plus `--config` files read for their `launcher` section only (these stages take no other
config): under `--launcher submitit` such a stage runs as a Slurm CPU job with `launcher.slurm`
updated by `launcher.stages.<stage>` (e.g. a CPU partition, no GPU).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the flags are added without importing the config
    from unilearn.config import SlurmConfig

# Slurm sends the requeue signal this long before the time limit; a shorter limit could never
# checkpoint (submitit's default).
SIGNAL_DELAY_S = 90
MIN_TIME_MIN = 2
CPU_STAGES = ("doctor", "manifest", "preprocess")


@dataclass(frozen=True)
class SlurmSpec:
    """One Slurm job's request, built by `slurm_spec` from the stage's `launcher.slurm` and the
    flags (every field required: the defaults are the config section's). `gpus_per_node > 0`
    means one task per GPU (DDP, one rank each)."""

    partition: str | None
    account: str | None
    qos: str | None
    constraint: str | None
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float
    time_min: int
    max_requeues: int
    job_name: str

    def submitit_parameters(self) -> dict[str, Any]:
        """Parameters for `submitit.AutoExecutor.update_parameters` (generic + `slurm_*`)."""
        params: dict[str, Any] = {
            "name": self.job_name,
            "nodes": self.nodes,
            "tasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
            "timeout_min": self.time_min,
            "slurm_signal_delay_s": SIGNAL_DELAY_S,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("partition", "account", "qos", "constraint"):
            value = getattr(self, key)
            if value:
                params[f"slurm_{key}"] = value
        return params

    def describe(self) -> str:
        fields = asdict(self)
        return " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--launcher` and the `--slurm-*` flags to a GPU stage's parser."""
    group = parser.add_argument_group(
        "launcher",
        "Where the stage runs. Defaults come from the config's `launcher` section; flags override.",
    )
    group.add_argument(
        "--launcher",
        choices=("local", "submitit"),
        default=None,
        help="local: run in this process; submitit: submit this same command as a Slurm job, "
        "print its id and log path, stream its log, wait, cancel it on Ctrl-C/SIGTERM "
        "(default: the config's launcher.name)",
    )
    group.add_argument(
        "--submitit-cluster",
        choices=("slurm", "local"),
        default="slurm",
        help="submitit backend: a real Slurm cluster, or a local subprocess with the same "
        "job/requeue mechanics (for machines without Slurm)",
    )
    group.add_argument("--slurm-partition", help="partition (launcher.slurm.partition)")
    group.add_argument("--slurm-account", help="account to charge (launcher.slurm.account)")
    group.add_argument("--slurm-qos", help="quality of service (launcher.slurm.qos)")
    group.add_argument(
        "--slurm-constraint", help="node features, e.g. a100 (launcher.slurm.constraint)"
    )
    group.add_argument(
        "--slurm-gpus",
        type=int,
        help="GPUs per node; the job runs one task (one DDP rank) per GPU "
        "(launcher.slurm.gpus_per_task x tasks_per_node)",
    )
    group.add_argument("--slurm-nodes", type=int, help="nodes (launcher.slurm.nodes)")
    group.add_argument(
        "--slurm-cpus", type=int, help="CPUs per task (launcher.slurm.cpus_per_task)"
    )
    group.add_argument(
        "--slurm-mem-gb", type=float, help="memory per node in GB (launcher.slurm.mem_gb)"
    )
    group.add_argument(
        "--slurm-time-min",
        type=int,
        help="time limit in minutes; at the limit the job is requeued and resumes from last.pt "
        "(launcher.slurm.time_min)",
    )
    group.add_argument(
        "--slurm-max-requeues",
        type=int,
        help="how many times a job that hit its time limit is requeued (launcher.slurm."
        "max_requeues; pre-emptions do not count)",
    )
    group.add_argument(
        "--slurm-folder",
        help="submitit folder for the job script and logs (default: a `slurm/` folder beside the "
        "stage's --out); each submission gets its own subfolder",
    )
    group.add_argument(
        "--slurm-quiet",
        action="store_true",
        help="print only the job id and log paths, do not stream the job's log",
    )


def add_cpu_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` (for the launcher section) and the launcher flags, on a CPU stage's parser."""
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="config file(s) whose `launcher` section says where this stage runs (repeatable)",
    )
    add_launcher_arguments(parser)


def submit_cpu_stage(args: argparse.Namespace) -> int | None:
    """Run the stage as a Slurm job if `--launcher submitit` (or the config's launcher.name) asks
    for it; None means "run it here". Without `--config` and `--launcher`, it runs here."""
    launcher = getattr(args, "launcher", None)
    configs = getattr(args, "config", None) or []
    if launcher in (None, "local") and not configs or launcher == "local":
        return None
    from unilearn.config import Config, load_config
    from unilearn.launch.submit import submit_if_requested

    cfg = load_config(configs) if configs else Config()
    return submit_if_requested(args, cfg.launcher.for_stage(args.stage))


def gpus_per_node(slurm: SlurmConfig) -> int:
    """The GPUs a job asks of each node: the config's `gpus_per_task` (GPUs each task, one DDP
    rank, is given) times its `tasks_per_node` (see the module's docstring)."""
    return slurm.gpus_per_task * slurm.tasks_per_node


def slurm_spec(slurm: SlurmConfig, args: argparse.Namespace) -> SlurmSpec:
    """The stage's `launcher.slurm` section, overridden by the `--slurm-*` flags."""
    tasks_per_node, node_gpus = slurm.tasks_per_node, gpus_per_node(slurm)
    if getattr(args, "slurm_gpus", None) is not None:
        node_gpus = args.slurm_gpus
        tasks_per_node = max(1, args.slurm_gpus)
    resources = SlurmSpec(
        partition=_flag(args, "slurm_partition", slurm.partition),
        account=_flag(args, "slurm_account", slurm.account),
        qos=_flag(args, "slurm_qos", slurm.qos),
        constraint=_flag(args, "slurm_constraint", slurm.constraint),
        nodes=int(_flag(args, "slurm_nodes", slurm.nodes)),
        tasks_per_node=tasks_per_node,
        gpus_per_node=node_gpus,
        cpus_per_task=int(_flag(args, "slurm_cpus", slurm.cpus_per_task)),
        mem_gb=float(_flag(args, "slurm_mem_gb", slurm.mem_gb)),
        time_min=int(_flag(args, "slurm_time_min", slurm.time_min)),
        max_requeues=int(_flag(args, "slurm_max_requeues", slurm.max_requeues)),
        job_name=f"unilearn-{getattr(args, 'stage', 'stage')}",
    )
    if resources.time_min < MIN_TIME_MIN:
        raise ValueError(
            f"launcher.slurm.time_min / --slurm-time-min = {resources.time_min}: expected at least "
            f"{MIN_TIME_MIN} minutes (Slurm signals the job {SIGNAL_DELAY_S} s before its limit "
            "so that it can checkpoint and requeue)"
        )
    for key in ("nodes", "cpus_per_task", "tasks_per_node"):
        if getattr(resources, key) < 1:
            raise ValueError(f"launcher.slurm.{key} = {getattr(resources, key)}: expected >= 1")
    return resources


def _flag(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value
