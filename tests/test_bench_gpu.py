"""bench/gpu.py runs end to end as a CPU dry run (tiny shapes, the same code as the CUDA run at
the paper shape) and its numbers are what they claim: MFU = counted FLOPs / step time / peak,
the loaders' cores = what the step consumes / one core's supply. The peak comes from the one
table the Slurm time estimate reads, in which no device name is shadowed by another."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unilearn.catalogue import GPU_PEAK_BF16_TFLOPS, gpu_peak_tflops
from unilearn.config import TimeEstimateConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_every_device_of_the_peak_table_gets_its_own_peak():
    # first match wins: a key listed after a key it contains ("H100 PCIe" after "H100") would
    # silently get the other device's peak
    for key, peak in GPU_PEAK_BF16_TFLOPS:
        assert gpu_peak_tflops(f"NVIDIA {key} 80GB") == peak, key
    assert gpu_peak_tflops("Tesla V100-SXM2-32GB") is None  # unknown: MFU n/a, never a guess


def test_the_time_estimate_assumes_the_peak_bench_gpu_finds_on_an_h100_sxm():
    assert TimeEstimateConfig().gpu_peak_tflops == gpu_peak_tflops("NVIDIA H100 80GB HBM3")


@pytest.mark.slow
def test_gpu_bench_dry_run_on_cpu_prints_consistent_numbers(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--dry-run", "--peak-tflops",
                          "0.5", "--json", str(tmp_path / "gpu.json")], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout  # fmt: skip
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["tiny"] and result["peak_flops"] == 0.5e12
    for model in ("vit", "unilearn", "mae"):
        r = result["steps"][model]
        assert r["flops"] > 0 and r["seconds"] > 0
        assert r["mfu"] == pytest.approx(r["flops"] / r["seconds"] / 0.5e12)
        assert r["items_per_s"] == pytest.approx(r["items"] / r["seconds"])
        row = re.search(rf"^{model}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)%$", out, re.M)
        assert row, f"no table row for {model}:\n{out}"
        assert float(row.group(1)) == pytest.approx(100 * r["mfu"], abs=0.051)
    # the MAE step trains on views: `pretrain_batch` of them, cut from half as many clips
    assert result["steps"]["mae"]["items"] == 2 * result["steps"]["vit"]["items"]
    for stage, consumer in (("finetune", "unilearn"), ("pretrain", "mae")):
        f = result["loader"][stage]
        assert f["consumer"] == consumer
        assert f["demand"] == result["steps"][consumer]["items_per_s"]
        assert f["cores_needed"] == pytest.approx(f["demand"] / f["per_core"])
    assert re.search(r"pretrain .* views/s per core; the mae step takes", out)
    ck = result["checkpoint"]
    assert ck["model"] == "unilearn_tiny_patch16_64" and ck["bytes"] > 0
    assert re.search(r"checkpoint .*stall \d+ ms background vs \d+ ms synchronous", out)
