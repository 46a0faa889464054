"""`unilearn status`: where the workflow stands, one line per run of its DAG (pre-training,
fine-tuning, evaluation): state, epoch e/E, ETA, last loss, and the Slurm job with its state.

Reads files only (checkpoints, `progress.json`, `log.jsonl`, the jobs' logs, the submitit
folders) and asks Slurm once for all runs, with a 1 s limit (`SlurmStates`), so it answers at
once, while Snakemake runs, without torch. States: done, running, queued (a Slurm job waits),
failed, pending (not started).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from unilearn.progress import format_duration

_JOB_FILE = re.compile(r"^(\d+(?:_\d+)?)_submitted\.pkl$")
_FAILED_SLURM = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                 "BOOT_FAIL", "DEADLINE")  # fmt: skip
_FAILED_LOG = ("Traceback (most recent call last)", "Error:", "error:")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, metavar="YAML",
                        help="the workflow's config file(s), repeat to merge "
                        "(default: configs/demo.yaml, as the workflow)")  # fmt: skip
    parser.add_argument("--runs", type=Path, metavar="DIR",
                        help="runs root of the workflow (default: runs/<config name>)")  # fmt: skip
    parser.add_argument("--target", action="append", metavar="TABLE_OR_FIGURE",
                        help="only the runs this table or figure needs, e.g. table1 (repeatable; "
                        "default: all tables and figures)")  # fmt: skip
    parser.add_argument("--all", action="store_true",
                        help="also list runs that are done (default: a count of them)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="the overrides the workflow runs with")  # fmt: skip


@dataclass
class RunStatus:
    stage: str
    run: str
    target: str
    state: str = "pending"
    epoch: str = "-"
    eta: str = "-"
    loss: str = "-"
    job: str = "-"

    def cells(self) -> list[str]:
        return [self.stage, self.run, self.target, self.state, self.epoch, self.eta, self.loss,
                self.job]  # fmt: skip


HEADER = ["STAGE", "RUN", "TARGET", "STATE", "EPOCH", "ETA", "LOSS", "JOB"]


def collect(cfg, runs: Path, targets: list[str]) -> list[RunStatus]:
    from unilearn import layout
    from unilearn.report import seeds, spec
    from unilearn.report.runs import parse_run

    cells = list(dict.fromkeys(c for t in targets for c in spec.required_cells(t, cfg)))
    logs = layout.logs_dir(runs)
    finetunes = list(dict.fromkeys((c.run, t) for c in cells for t in layout.targets(c.train)))
    evaluations = list(dict.fromkeys(
        (c.run, t, c.test) for c in cells for t in layout.targets(c.train)))  # fmt: skip
    # a pre-training per mode, and per seed under `seeds_pretrain` (`<mode>@seed=N`)
    modes = list(dict.fromkeys(seeds.pretrain_name(
        cfg.experiments[parse_run(run).experiment].pretrain, seeds.pretrain_seed(cfg, run))
        for run, _ in finetunes))  # fmt: skip
    squeue = SlurmStates(_job_ids(runs))
    out = []
    for mode in modes:
        out.append(_training("pretrain", mode, "-", layout.pretrain_dir(runs, mode),
                             layout.log_path(logs, "pretrain", mode), cfg.pretrain.epochs, squeue,
                             expected_hash(cfg, "pretrain", mode, "-")))  # fmt: skip
    for run, target in finetunes:
        out.append(_training("finetune", run, target, layout.finetune_dir(runs, run, target),
                             layout.log_path(logs, "finetune", run, target), cfg.finetune.epochs,
                             squeue, expected_hash(cfg, "finetune", run, target)))  # fmt: skip
    for run, target, test in evaluations:
        pred = layout.prediction_path(runs, run, target, test)
        # A fine-tuning job tests its own model (there are no evaluation jobs): until the
        # metrics are there, the row follows that job's Slurm state and log.
        status = RunStatus("test", run, f"{target} on {test}")
        metrics = layout.sidecar_path(pred, layout.METRICS)
        log = layout.log_path(logs, "finetune", run, target)
        m = _read_json(metrics) or {}
        if m and m.get("config_hash") in (None, expected_hash(cfg, "finetune", run, target)):
            status.state = "done"
            if "uar" in m and "war" in m:
                status.loss = f"UAR {100 * m['uar']:.1f} WAR {100 * m['war']:.1f}"
        else:  # a log beside metrics of an earlier config is that config's
            _from_job(status, layout.run_files(pred.parent).slurm, "finetune", log, squeue,
                      use_log=not m)  # fmt: skip
        out.append(status)
    return out


def expected_hash(cfg, stage: str, run: str, target: str) -> str | None:
    """The config hash a run of this config records (`config.sha256`), the one the workflow
    tracks (`runs.finetune_hash`); a run directory holding another one is from an earlier config
    and will be redone."""
    from unilearn import layout
    from unilearn.config import ConfigError, config_hash
    from unilearn.report import runs, seeds

    try:
        if stage == "pretrain":  # `run`: the mode, `<mode>@seed=N` for a seeded pre-training
            seed = seeds.parse_pretrain_name(run)[1]
            seeded = cfg if seed is None else cfg.with_overrides([("seed", seed)])
            return config_hash(seeded, "pretrain")
        return runs.finetune_hash(cfg, run, layout.parse_target(target)[0])
    except (ConfigError, ValueError, KeyError):
        return None


def _training(
    stage, run, target, run_dir: Path, log: Path, epochs: int, squeue, expected: str | None
) -> RunStatus:
    from unilearn.layout import run_files

    status = RunStatus(stage, run, target)
    files = run_files(run_dir)
    recorded = _read_text(files.config_hash)
    if expected is not None and recorded is not None and recorded != expected:
        # an earlier config's run: what is on disk says nothing about this one (yet)
        _from_job(status, files.slurm, stage, log, squeue, epochs, use_log=False)
        return status
    history = _history(files.history)
    progress = _read_json(files.progress)
    total = (progress or {}).get("epochs") or epochs
    if history:
        status.epoch = f"{len(history)}/{total}"
        status.loss = _loss(history[-1])
    if _finished(run_dir) and (progress or {}).get("state") != "running":
        status.state = "done"
        status.epoch = f"{total}/{total}" if history or stage == "finetune" else status.epoch
        return status
    if progress:
        status.epoch = f"{progress.get('epoch', 0)}/{total}"
        if progress.get("loss"):
            status.loss = _loss(progress["loss"])
        status.state = progress.get("state", "running")
        if status.state == "running":
            eta = progress.get("eta_s")
            age = time.time() - float(progress.get("updated", time.time()))
            if eta is not None:
                status.eta = format_duration(max(eta - age, 0))
            if progress.get("host") == socket.gethostname() and not _alive(progress.get("pid")):
                status.state = "failed"  # its process is gone (killed) without a last word
                status.eta = "-"
    _from_job(status, files.slurm, stage, log, squeue, total)
    return status


def _from_job(
    status: RunStatus,
    slurm_dir: Path,
    stage: str,
    log: Path,
    squeue,
    epochs: int | None = None,
    use_log: bool = True,
) -> None:
    """Slurm job id and state of the run's latest submission; the job log's verdict."""
    job_id = _latest_job(slurm_dir, stage)
    if job_id is not None:
        status.job, state = squeue.job_cell(job_id)
        if state in ("PENDING", "CONFIGURING", "REQUEUED"):  # a requeued run waits again
            status.state = "queued" if status.state in ("pending", "failed") else status.state
        elif state == "RUNNING" and status.state in ("pending", "failed"):
            status.state = "running"
        elif state and state.split()[0] in _FAILED_SLURM:
            status.state = "failed"
    if use_log and status.state in ("pending", "running") and log.is_file():
        tail = _tail(log)
        if any(marker in tail for marker in _FAILED_LOG):
            status.state = "failed"
        elif status.state == "pending":
            status.state = "running"  # started: the log exists, no step reported yet
            if status.epoch == "-" and status.stage != "test":
                status.epoch = f"0/{epochs}" if epochs else "-"


def _job_ids(runs: Path) -> list[str]:
    """The latest Slurm job of every run under `runs` (one query asks for all of them)."""
    from unilearn.layout import SLURM_DIR

    dirs = {p.parent.parent for p in runs.glob(f"**/{SLURM_DIR}/*/*_submitted.pkl")}
    stages = {(d, p.name.split("-")[0]) for d in dirs for p in d.iterdir() if p.is_dir()}
    return sorted({j for d, stage in stages if (j := _latest_job(d, stage)) is not None})


def _latest_job(slurm_dir: Path, stage: str) -> str | None:
    if not slurm_dir.is_dir():
        return None
    folders = sorted(p for p in slurm_dir.glob(f"{stage}-*") if p.is_dir())
    for folder in reversed(folders):
        ids = [m[1] for p in folder.iterdir() if (m := _JOB_FILE.match(p.name))]
        if ids:
            return max(ids, key=lambda i: [int(x) for x in i.split("_")])
    return None


class SlurmStates:
    """Job id -> Slurm state of the runs' latest jobs, from one `squeue` (this user's queued and
    running jobs) and one `sacct` (the finished ones squeue no longer lists), both within
    `budget` seconds together, so `unilearn status` never waits on a controller that does not
    answer: then `reachable` is False and the JOB column says so. Empty without Slurm."""

    NOT_REACHABLE = "Slurm not reachable"

    def __init__(self, job_ids: list[str], budget: float = 1.0) -> None:
        self.states: dict[str, str] = {}
        self.reachable = True
        if not job_ids:
            return
        deadline = time.monotonic() + budget
        if shutil.which("squeue") is not None:
            text = _query(["squeue", "--noheader", "--me", "--format", "%i %T"], deadline)
            if text is None:
                self.reachable = False
                return
            self.states = dict(line.split(maxsplit=1) for line in text.splitlines()
                               if " " in line.strip())  # fmt: skip
        missing = [j for j in dict.fromkeys(job_ids) if j not in self.states]
        if missing and shutil.which("sacct") is not None:
            text = _query(["sacct", "--noheader", "-X", "--parsable2", "--format", "JobID,State",
                           "-j", ",".join(missing)], deadline)  # fmt: skip
            if text is None:
                self.reachable = False
                return
            for line in text.splitlines():
                job, _, state = line.strip().partition("|")
                if job and state:
                    self.states.setdefault(job, state)

    def job_cell(self, job_id: str) -> tuple[str, str | None]:
        """(the JOB column, the job's state or None)."""
        if not self.reachable:
            return f"{job_id} {self.NOT_REACHABLE}", None
        state = self.states.get(job_id)
        return (f"{job_id} {state}" if state else job_id), state


def _query(argv: list[str], deadline: float) -> str | None:
    """stdout of a Slurm client that must answer before `deadline` (its whole process group is
    killed then: a client stuck on the controller leaves nothing behind); None if it did not."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        return None
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)  # fmt: skip
    except OSError:
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        return None
    return out if proc.returncode == 0 else ""


def _alive(pid) -> bool:
    if not pid:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return out


def _finished(run_dir: Path) -> bool:
    """A checkpoint written by the current attempt: every attempt records its config first, and
    Snakemake leaves the previous config's checkpoint in place until the new one replaces it."""
    from unilearn.layout import run_files

    files = run_files(run_dir)
    checkpoint, recorded = files.checkpoint(), files.config_hash
    if not checkpoint.is_file():
        return False
    return not recorded.is_file() or checkpoint.stat().st_mtime >= recorded.stat().st_mtime


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - size, 0))
        return f.read().decode(errors="replace")


def _loss(record: dict) -> str:
    losses = {k.removeprefix("loss_"): v for k, v in record.items() if k.startswith("loss_")}
    return " ".join(f"{k} {float(v):.3f}" for k, v in sorted(losses.items())) or "-"


def render(rows: list[RunStatus], show_done: bool) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    shown = [r for r in rows if show_done or r.state != "done"]
    lines = []
    if shown:
        table = [HEADER] + [r.cells() for r in shown]
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    order = ("done", "running", "queued", "failed", "pending")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    lines.append(f"{len(rows)} runs: {summary or 'none'}"
                 + ("" if show_done or not counts.get("done") else " (--all lists the done ones)"))  # fmt: skip
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from unilearn.config import load_config
    from unilearn.report import spec

    configs = args.config or [Path("configs/demo.yaml")]
    cfg = load_config(configs, args.overrides)
    runs = args.runs or Path("runs") / cfg.name
    targets = args.target or [*spec.TABLES, *spec.FIGURES]
    print(render(collect(cfg, runs, targets), args.all))
    return 0
