"""`--restart-if-config-changed`: a run directory whose recorded config hash differs from this
run's drops its `last.pt` (a fresh start); the same hash, or none recorded, keeps it (resume)."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def test_the_engines_start_afresh_under_another_config_and_resume_under_the_same(
    tmp_path, monkeypatch, capsys
):
    from _engine_data import toy_finetune_data, toy_pretrain_data

    import unilearn.engine.finetune as finetune
    import unilearn.engine.pretrain as pretrain
    from unilearn.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = load_config(configs / "demo.yaml", ["wandb.mode=disabled", "finetune.epochs=1",
                      "finetune.batch_size=8", "pretrain.epochs=1", "pretrain.warmup_epochs=0", "finetune.warmup_epochs=0", "pretrain.batch_size=8"])  # fmt: skip
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    monkeypatch.setattr(pretrain, "pretrain_data", toy_pretrain_data)
    run = tmp_path / "finetune"
    finetune.run(cfg, "unilearn", "dfew", 1, None, run, progress=False)
    changed = cfg.with_overrides(["finetune.blr=0.01"])
    finetune.run(changed, "unilearn", "dfew", 1, None, run, progress=False,
                 restart_if_config_changed=True)  # fmt: skip
    assert "last.pt dropped" in capsys.readouterr().err
    finetune.run(changed, "unilearn", "dfew", 1, None, run, progress=False,
                 restart_if_config_changed=True)  # fmt: skip
    assert "resuming from" in capsys.readouterr().out
    run = tmp_path / "pretrain"
    pretrain.run(cfg, "image+video", None, run, progress=False)
    pretrain.run(cfg.with_overrides(["pretrain.weight_decay=0.123"]), "image+video", None, run,
                 progress=False, restart_if_config_changed=True)  # fmt: skip
    assert "last.pt dropped" in capsys.readouterr().err
