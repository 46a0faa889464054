"""Shared pytest fixtures. Area-specific fixtures live in the test files that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never touch the network: W&B stays offline unless a test says otherwise.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory) -> Path:
    """A tiny synthetic tree (`unilearn synth --preset tiny --seed 0`): all five datasets in their
    native layouts under DFEW/, MAFW/, FERV39K/, AffectNet/, VoxCeleb2/ (+ raw_videos/, synth.json),
    broken inputs included. Session-scoped and shared: tests must not modify it."""
    from unilearn.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("synth_tiny")
    write_synthetic(root, "tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def manifests_tiny(synth_tiny, tmp_path_factory) -> Path:
    """`unilearn manifest` of every dataset of `synth_tiny`: DIR/{dataset}.parquet + quarantine."""
    from unilearn.data.manifest import write_manifest
    from unilearn.data.native import READERS, read_native
    from unilearn.data.synth import ROOTS

    out = tmp_path_factory.mktemp("manifests_tiny")
    for dataset in READERS:
        write_manifest(read_native(dataset, synth_tiny / ROOTS[dataset], progress=False), out)
    return out


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node Slurm with accounting, up for the whole session (tests/slurm_cluster.py).

    Sets SLURM_CONF so sbatch/squeue/sacct and submitit talk to it. Without root it skips with the
    reason; under CI (CI=true) that is a failure, because CI must exercise the real cluster.
    """
    import slurm_cluster as cluster_lib

    yield from cluster_lib.session_cluster()
