"""A cheap, resumable stand-in for a GPU stage, run inside real Slurm jobs by the launcher tests.

`main(argv)` counts `--steps` steps of `--step-s` seconds, keeping its progress in OUT/last.json
(like a stage's last.pt), so a requeued job resumes where it stopped. Run as a script it is the
submitting side: `python tests/launch_stage.py submit [--cluster slurm|local] -- STAGE_ARGS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="launch_stage")
    parser.add_argument("stage")
    parser.add_argument("--launcher", default="local")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=0.1)
    parser.add_argument("--fail-at", type=int, default=None)
    args = parser.parse_args(argv)
    assert args.launcher == "local", "the job must run the stage locally, not resubmit it"
    rank = int(os.environ.get("RANK", "0"))
    args.out.mkdir(parents=True, exist_ok=True)
    rank_info = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    (args.out / f"rank{rank}.json").write_text(json.dumps(rank_info))
    last = args.out / "last.json"
    state = json.loads(last.read_text()) if last.exists() else {"step": 0, "starts": []}
    state["starts"].append(state["step"])
    _save(last, state)
    while state["step"] < args.steps:
        time.sleep(args.step_s)
        state["step"] += 1
        _save(last, state)
        print(f"step {state['step']}/{args.steps}", flush=True)
        if args.fail_at == state["step"]:
            print(f"launch_stage: boom at step {state['step']}", file=sys.stderr, flush=True)
            return 3
    (args.out / "done.json").write_text(json.dumps(state))
    print("launch_stage: done", flush=True)
    return 0


def _save(path: Path, state: dict) -> None:
    # one temp file per process: the ranks of a multi-task job all save (racing on one name failed)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def submit(argv: list[str]) -> int:
    """The submitting process: `unilearn.launch.submit_if_requested` with this module as entry."""
    from unilearn.config import LauncherConfig, SlurmConfig
    from unilearn.launch.submit import submit_if_requested

    parser = argparse.ArgumentParser(prog="launch_stage submit")
    parser.add_argument("--cluster", default="slurm")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--time-min", type=int, default=5)
    parser.add_argument("stage_argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    stage_argv = [a for a in args.stage_argv if a != "--"]
    namespace = argparse.Namespace(
        stage="fake",
        stage_argv=stage_argv,
        launcher="submitit",
        submitit_cluster=args.cluster,
        slurm_folder=args.folder,
        slurm_time_min=args.time_min,
    )
    launcher_cfg = LauncherConfig(name="local", slurm=SlurmConfig(cpus_per_task=1, mem_gb=0.5))
    return submit_if_requested(namespace, launcher_cfg, entry="launch_stage:main")


if __name__ == "__main__":
    if sys.argv[1:2] != ["submit"]:
        raise SystemExit("usage: launch_stage.py submit [--cluster slurm|local] --folder F -- ARGS")
    raise SystemExit(submit(sys.argv[2:]))
