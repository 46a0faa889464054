"""Atomic writes replace the target only on success and give it the usual permissions."""

from __future__ import annotations

import os

import pytest

from unilearn.atomic import atomic_open, write_text


def test_written_file_has_the_umask_permissions_not_mkstemps_0600(tmp_path):
    mask = os.umask(0o022)
    try:
        import importlib

        import unilearn.atomic as atomic

        importlib.reload(atomic)
        atomic.write_text(tmp_path / "table.csv", "a,b\n")
    finally:
        os.umask(mask)
        importlib.reload(atomic)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
