"""What every result row records about where it came from: the code (git sha), the data (a hash
of the Parquet manifests it was computed on) and the config (hash, from the metrics files)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

from unilearn.layout import manifest_path


def git_sha(repo: str | Path | None = None) -> str:
    """HEAD's sha (12 hex) of the code that runs (the checkout holding the `unilearn` package, by
    default), `+dirty` when tracked files differ from it; `unknown` outside git."""
    if repo is None:
        import unilearn

        repo = Path(unilearn.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_hash(manifests: str | Path, datasets: Iterable[str]) -> str:
    """sha256 (16 hex) over the named manifests' bytes, in dataset order."""
    digest = hashlib.sha256()
    for dataset in sorted(set(datasets)):
        path = manifest_path(manifests, dataset)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest missing (run `unilearn manifest {dataset}`)")
        digest.update(f"{dataset}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]
