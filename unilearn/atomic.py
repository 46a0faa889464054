"""Atomic file writes: every output is written to a temporary file beside its target and renamed
into place, so a killed job never leaves a half-written checkpoint, manifest or table."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _default_mode() -> int:
    """What `open()` would give a new file: 0o666 minus the umask (read once; os.umask can only
    be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; the result should be as shareable as any other output
        # (group members on a cluster read each other's tables and checkpoints)
        os.chmod(tmp_path, _MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open()` that only replaces `path` once the block finished without an exception."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_parquet(df, path: str | os.PathLike, **kwargs: Any) -> None:
    """Write a pandas DataFrame as Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, **kwargs)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` atomically (checkpoints are never half-written)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
