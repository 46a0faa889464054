"""bench/gpu.py runs end to end on CPU at its tiny shape (the CUDA run is the same code at the
paper shape) and prints its table; MFU uses the right peak for H100 / H200 / A100 names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_peak_flops_by_device_name():
    sys.path.insert(0, str(BENCH))
    try:
        from gpu import peak_for_name
    finally:
        sys.path.remove(str(BENCH))
    assert peak_for_name("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_for_name("NVIDIA H100 PCIe") == 756e12
    assert peak_for_name("NVIDIA H200") == 989e12
    assert peak_for_name("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_for_name("Tesla V100-SXM2-32GB") is None


@pytest.mark.slow
def test_gpu_bench_runs_tiny_on_cpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--tiny"], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout  # fmt: skip
    for model in ("vit", "unilearn", "mae"):
        row = re.search(rf"^{model}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+n/a$", out, re.M)
        assert row, f"no table row for {model}:\n{out}"
        assert all(float(v) > 0 for v in row.groups())
    assert re.search(r"loader .*: [\d.]+ clips/s on one core", out)
    assert re.search(r"checkpoint .*stall \d+ ms background vs \d+ ms synchronous", out)
