"""`unilearn STAGE --help` answers without importing torch (argparse is set up from torch-free
modules) and shows a default only where an option has one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unilearn.cli import STAGES, stage_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_help_shows_no_empty_default(stage):
    parser, _ = stage_parser(stage)
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: [])" not in text


def test_training_stage_help_imports_no_torch():
    code = ("import sys\nfrom unilearn.cli import main\nfor stage in sys.argv[1:]:\n"
            "    try:\n        main([stage, '--help'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")  # fmt: skip
    stages = ["pretrain", "finetune", "evaluate", "predict", "params", "status", "aggregate"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, *stages], capture_output=True, text=True,
                          cwd=ROOT, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("usage: unilearn") == len(stages)
