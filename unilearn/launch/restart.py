"""`--restart-if-config-changed`: a training stage (pretrain, finetune) asked to start afresh when
its run directory holds another config's resumable state.

The engines refuse to resume a `last.pt` written under another config (resuming would mix two
experiments). A workflow job re-run because its config changed wants a fresh start, while one
re-run after a crash, under the same config, wants to resume: the config hash its run directory
records (`config.sha256`, written when a run starts) tells the two apart. The workflow passes the
flag; by hand, without it, the engine names the stale `last.pt` instead.

Every rank may call `restart_if_config_changed` before joining the others (it only deletes a
stale file, and rank 0 writes this run's `config.sha256` only after all have joined).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from unilearn.layout import RUN_FILES


def add_restart_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart-if-config-changed",
        action="store_true",
        help=f"drop RUN/{RUN_FILES['resume']} when RUN/{RUN_FILES['config_hash']} records another "
        "config, and start afresh (default: a stale last.pt is an error naming it); the workflow "
        "passes this",
    )


def restart_if_config_changed(out: str | os.PathLike, digest: str) -> bool:
    """Delete `out/last.pt` when `out/config.sha256` holds a hash other than `digest`; True if
    it was deleted. A run directory without a recorded hash keeps its `last.pt`."""
    out = Path(out)
    try:
        recorded = (out / RUN_FILES["config_hash"]).read_text().strip()
    except FileNotFoundError:
        return False
    if recorded == digest:
        return False
    try:
        (out / RUN_FILES["resume"]).unlink()
    except FileNotFoundError:  # nothing to resume, or another rank dropped it first
        return False
    print("config changed: last.pt dropped, starting afresh", file=sys.stderr, flush=True)
    return True
