"""Shared pytest fixtures. Area-specific fixtures live in the test files that use them."""

from __future__ import annotations

import os

import pytest
import torch

# Tests never touch the network: W&B stays offline unless a test says otherwise.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
