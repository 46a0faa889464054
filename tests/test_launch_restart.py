"""`--restart-if-config-changed`: a run directory whose recorded config hash differs from this
run's drops its `last.pt` (a fresh start); the same hash, or none recorded, keeps it (resume)."""

from __future__ import annotations

import argparse

from unilearn.launch.restart import add_restart_argument, restart_if_config_changed


def _run_dir(tmp_path, recorded: str | None):
    (tmp_path / "last.pt").write_bytes(b"state")
    if recorded is not None:
        (tmp_path / "config.sha256").write_text(recorded + "\n")
    return tmp_path


def test_another_configs_last_pt_is_dropped(tmp_path, capsys):
    out = _run_dir(tmp_path, "a" * 64)
    assert restart_if_config_changed(out, "b" * 64)
    assert not (out / "last.pt").exists()
    assert "config changed: last.pt dropped, starting afresh" in capsys.readouterr().err
    assert not restart_if_config_changed(out, "b" * 64)  # nothing left to drop (another rank)


def test_the_same_configs_last_pt_is_kept_to_resume(tmp_path):
    out = _run_dir(tmp_path, "a" * 64)
    assert not restart_if_config_changed(out, "a" * 64)
    assert (out / "last.pt").read_bytes() == b"state"


def test_a_run_directory_without_a_recorded_hash_keeps_its_last_pt(tmp_path):
    out = _run_dir(tmp_path, None)
    assert not restart_if_config_changed(out, "b" * 64)
    assert (out / "last.pt").exists()
    assert not restart_if_config_changed(tmp_path / "not-yet", "b" * 64)


def test_the_flag_is_off_unless_given():
    parser = argparse.ArgumentParser()
    add_restart_argument(parser)
    assert not parser.parse_args([]).restart_if_config_changed
    assert parser.parse_args(["--restart-if-config-changed"]).restart_if_config_changed
