"""Weights & Biases logging of a training or evaluation run: project/group/job_type/name from the
config (group = experiment, name = dataset-fold), offline by default (`wandb sync` uploads later),
online on request. Only rank 0 logs. The API key is never read or written here: W&B takes it from
its own login (~/.netrc) or WANDB_API_KEY, and nothing of ours records it.

Also reads an offline run back (`read_offline_run`), for tests and for checking a run on a
machine without network.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Any

from unilearn.atomic import write_text

_ID_FILE = "wandb_id"


class WandbRun:
    """A W&B run on rank 0; every method is a no-op elsewhere or with mode `disabled`."""

    def __init__(
        self,
        *,
        project: str,
        entity: str | None,
        mode: str,
        group: str,
        job_type: str,
        name: str,
        run_dir: str | os.PathLike,
        config: dict[str, Any],
        enabled: bool = True,
    ) -> None:
        self.run = None
        if not enabled or mode == "disabled":
            return
        import wandb

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        # One W&B run per run directory: a resumed job appends to the same run.
        id_file = run_dir / _ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            write_text(id_file, run_id + "\n")
        self.run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            job_type=job_type,
            name=name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            mode=mode,
            config=config,
            settings=wandb.Settings(console="off", silent=True),
        )

    @property
    def dir(self) -> Path | None:
        """The run's local directory (`.../wandb/offline-run-*` or `run-*`)."""
        return Path(self.run.dir).parent if self.run is not None else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in metrics.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def run_for(
    cfg,
    *,
    job_type: str,
    group: str,
    name: str,
    run_dir: str | os.PathLike,
    is_main: bool,
    mode: str | None = None,
) -> WandbRun:
    """A WandbRun configured from `cfg.wandb`; `mode` (e.g. from `--wandb online`) wins."""
    from unilearn.config import config_hash

    config = cfg.model_dump(mode="json", exclude={"experiments", "sweeps"})
    config["config_hash"] = config_hash(cfg)
    return WandbRun(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        mode=mode or cfg.wandb.mode,
        group=group,
        job_type=job_type,
        name=name,
        run_dir=run_dir,
        config=config,
        enabled=is_main,
    )


def add_wandb_argument(parser) -> None:
    parser.add_argument(
        "--wandb",
        choices=["offline", "online", "disabled"],
        default=None,
        help="W&B mode for this run (default: the config's wandb.mode, offline unless changed)",
    )


# -- reading an offline run back ---------------------------------------------------------------

# The `.wandb` transaction log is LevelDB's log format (32 KiB blocks of records with a 7-byte
# header: crc32, length, type) after a 7-byte file header. W&B no longer ships a Python reader.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    records, partial, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            # zero padding (a flush mid-block, or a preallocated tail): LevelDB's reader skips
            # the rest of the block rather than stopping, and records may follow
            pos += (_BLOCK - pos % _BLOCK) % _BLOCK
            continue
        if pos + length > len(data):  # a record still being written
            break
        chunk, pos = data[pos : pos + length], pos + length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            partial = chunk
        elif kind == _MIDDLE:
            partial += chunk
        elif kind == _LAST:
            records.append(partial + chunk)
    return records


def read_offline_run(run_dir: str | os.PathLike, wait: float = 30.0) -> dict[str, Any]:
    """`{"config", "summary", "history", "group", "job_type", "name", "complete"}` of an offline
    run directory (`.../wandb/offline-run-*`), decoded from its `.wandb` file.

    `run.finish()` can return before W&B's service process has written the whole log (seen: a
    file holding only its 7-byte header, or every record but the last ones), so this re-reads
    for up to `wait` seconds until the run's exit record is there; `complete` says whether it
    was."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    deadline = time.monotonic() + wait
    while True:
        files = sorted(run_dir.glob("*.wandb"))
        if files:
            out = _decode(files[0], pb)
            if out["complete"] or time.monotonic() >= deadline:
                return out
        elif time.monotonic() >= deadline:
            raise FileNotFoundError(f"{run_dir}: no .wandb file")
        time.sleep(0.1)


def _decode(path: Path, pb) -> dict[str, Any]:
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "complete": False}

    def _key(item) -> str:
        return ".".join(item.nested_key) if item.nested_key else item.key

    for raw in _records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(group=run.run_group, job_type=run.job_type, name=run.display_name)
            for item in run.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "exit":
            out["complete"] = True
    return out
