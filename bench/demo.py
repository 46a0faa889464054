"""Time and memory of `make demo` (snakemake --cores 2 results/table1.csv, configs/demo.yaml) from
a fresh clone: wall time, peak RSS summed over the whole process tree, and where the time goes
(per rule, from Snakemake's job metadata).

The machine is shared and noisy, so the wall time is also given as a ratio to a fixed CPU
workload (a 2-thread torch matmul loop) measured in the same run; the targets are <= 5 min and
<= 3 GiB on 2 cores.

    .venv/bin/python bench/demo.py [--target results/table1.csv] [--keep DIR] [--seeds 0,1]

`--seeds 0,1` times `make demo-seeds` (the same target with `seeds: [0, 1]`: twice the
fine-tunings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def calibration_s() -> float:
    """Seconds of a fixed 2-thread CPU workload (the unit the demo time is also given in)."""
    import torch

    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    start = time.perf_counter()
    for _ in range(400):
        a = torch.tanh(a @ a * 1e-3)
    return time.perf_counter() - start


def tree_rss_bytes(root: int) -> int:
    """RSS summed over `root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid, ppid = int(entry.name), int(fields[1])
        children[ppid].append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total


def rule_times(workdir: Path) -> dict[str, tuple[int, float]]:
    """rule -> (jobs, summed job seconds), from .snakemake/metadata (one record per output file,
    so a job with several outputs is counted once, by its job hash)."""
    jobs: dict[tuple[str, int], float] = {}
    for path in (workdir / ".snakemake" / "metadata").glob("*"):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("starttime") and meta.get("endtime"):
            jobs[(meta["rule"], meta["job_hash"])] = meta["endtime"] - meta["starttime"]
    out: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for (rule, _), secs in jobs.items():
        out[rule][0] += 1
        out[rule][1] += secs
    return {rule: (n, s) for rule, (n, s) in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--target", default="results/table1.csv")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="run here and keep the outputs")
    parser.add_argument("--seeds", default=None, metavar="0,1",
                        help="the config's seeds (make demo-seeds: 0,1); default: its one seed")  # fmt: skip
    args = parser.parse_args()

    calib = calibration_s()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="unilearn-demo-"))
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(workdir)], check=True)
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "--cores", str(args.cores), args.target]
    if args.seeds:
        cmd += ["--config", f'overrides=["seeds=[{args.seeds}]"]']
    log = open(workdir / "demo.log", "w")  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - start
    log.close()
    if proc.returncode != 0:
        print(f"demo failed ({proc.returncode}); see {workdir / 'demo.log'}", file=sys.stderr)
        return 1
    seeds = f", seeds [{args.seeds}]" if args.seeds else ""
    print(
        f"demo target        {args.target} (--cores {args.cores}{seeds}), fresh clone in {workdir}"
    )
    budget = 10 if args.seeds else 5  # minutes: make demo-seeds runs twice the fine-tunings
    print(
        f"wall time          {wall:7.1f} s   ({wall / (60 * budget):.2f} of the {budget}-minute budget)"
    )
    print(f"calibration        {calib:7.2f} s   (demo = {wall / calib:.0f} x the fixed workload)")
    print(
        f"peak RSS (tree)    {peak / 2**30:7.2f} GiB ({peak / (3 * 2**30):.2f} of the 3 GiB budget)"
    )
    print("per rule           jobs   summed job time   share of wall x cores")
    for rule, (n, secs) in sorted(rule_times(workdir).items(), key=lambda kv: -kv[1][1]):
        print(f"  {rule:<16} {n:>4}   {secs:9.1f} s       {secs / (wall * args.cores):6.1%}")
    table = workdir / args.target
    if table.suffix == ".csv":
        print(table.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
