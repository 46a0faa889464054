"""bench/gpu.py runs end to end as a CPU dry run (tiny shapes, the same code as the CUDA run at
the paper shape) and its numbers are what they claim: MFU = counted FLOPs / step time / peak,
the loaders' cores = what the step consumes / one core's supply. The peak comes from the one
table the Slurm time estimate reads, which gives each device (by the name torch reports) its
datasheet peak."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unilearn.catalogue import gpu_peak_tflops
from unilearn.config import TimeEstimateConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"


# Device names as `torch.cuda.get_device_name` reports them, and NVIDIA's dense bf16 peak of
# each (datasheets, TFLOP/s without sparsity): written here, not read from the table.
DATASHEET_PEAKS = {
    "NVIDIA H100 80GB HBM3": 989.0,  # H100 SXM5
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H200": 989.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
}


def test_each_device_gets_its_datasheet_peak_by_the_name_torch_reports():
    # the first table key found in the name wins: "H100" listed before "H100 PCIe" would give a
    # PCIe card the SXM's peak
    for name, peak in DATASHEET_PEAKS.items():
        assert gpu_peak_tflops(name) == peak, name
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
