"""Every stage stops on bad input with one paragraph naming the file (and line, key or clip) and
the problem, exit status 2; a failed run is status 1; never a traceback unless --debug or
UNILEARN_DEBUG=1 asks for it. Run through `--launcher submitit`, the same message and status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from _stores import build_tiny_store

from unilearn.cli import main as cli
from unilearn.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED_RUN,
    InputError,
    exit_status,
    message,
    run_reporting,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")
# the tiny store's folds have 1-2 clips per class: too few to hold a validation split out
FAST = ["wandb.mode=disabled", "finetune.epochs=1", "finetune.warmup_epochs=0",
        "pretrain.epochs=1", "data.num_workers=0", "finetune.selection.validation=null"]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("bad_input_store"))


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    status = cli(argv)
    err = capsys.readouterr().err
    return status, err


def _one_paragraph(err: str, prog: str, kind: str = "bad input") -> str:
    """The last line of stderr: the message; it must be the whole story (no traceback)."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: {kind}: "), err
    return last


def _finetune(store: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--experiment", "videomae", "--dataset", "dfew", "--fold", "1",
            "--store", str(store), "--out", str(out), "--config", DEMO, "--no-progress",
            *FAST, *extra]  # fmt: skip


def _evaluate(store: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--store", str(store), "--dataset",
            "dfew", "--fold", "1", "--out", str(out), "--config", DEMO, "--no-progress", "wandb.mode=disabled"]  # fmt: skip


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# -- config errors ----------------------------------------------------------------------------


def test_config_with_a_misspelt_key_names_the_file_and_key(store, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  epochz: 3\n")
    status, err = _run(capsys, _finetune(store, tmp_path / "ft", "--config", str(bad)))
    last = _one_paragraph(err, "unilearn finetune")
    assert status == EXIT_BAD_INPUT and str(bad) in last and "epochz" in last


def test_config_file_not_found_and_not_yaml(tmp_path, capsys):
    status, err = _run(
        capsys,
        [
            "tables",
            "table1",
            "--config",
            str(tmp_path / "nope.yaml"),
            "--runs",
            str(tmp_path),
            "--out",
            str(tmp_path / "t.csv"),
        ],
    )
    assert status == 2 and "nope.yaml: config file not found" in _one_paragraph(
        err, "unilearn tables"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    status, err = _run(capsys, ["pretrain", "--config", str(broken), "--mode", "none",
                                "--store", str(tmp_path), "--out", str(tmp_path / "pt")])  # fmt: skip
    assert status == 2 and "broken.yaml: not valid YAML" in _one_paragraph(err, "unilearn pretrain")


def test_override_with_a_bad_value_names_the_key(store, tmp_path, capsys):
    status, err = _run(capsys, _finetune(store, tmp_path / "ft", "finetune.epochs=many"))
    assert status == 2 and "finetune.epochs" in _one_paragraph(err, "unilearn finetune")


def test_missing_fold_is_a_usage_error_with_status_2(store, tmp_path, capsys):
    argv = [a for a in _finetune(store, tmp_path / "ft") if a not in ("--fold", "1")]
    status, err = _run(capsys, argv)
    assert status == 2 and "give --fold 1..5" in _one_paragraph(err, "unilearn finetune")


# -- checkpoints ------------------------------------------------------------------------------


def test_missing_checkpoint_names_the_file(store, tmp_path, capsys):
    ckpt = tmp_path / "absent.pt"
    status, err = _run(capsys, _evaluate(store, ckpt, tmp_path / "p.parquet"))
    last = _one_paragraph(err, "unilearn evaluate")
    assert status == 2 and f"{ckpt}: no such checkpoint file" in last


def test_truncated_checkpoint_names_the_file(store, tmp_path, capsys):
    ckpt = tmp_path / "trunc.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, ckpt)
    _truncate(ckpt)
    status, err = _run(capsys, _evaluate(store, ckpt, tmp_path / "p.parquet"))
    last = _one_paragraph(err, "unilearn evaluate")
    assert status == 2 and f"{ckpt}: not a readable PyTorch checkpoint" in last


def test_pickled_checkpoint_is_refused_not_executed(store, tmp_path, capsys):
    ckpt = tmp_path / "pickled.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": subprocess.CompletedProcess([], 0)}, ckpt)
    status, err = _run(capsys, _evaluate(store, ckpt, tmp_path / "p.parquet"))
    last = _one_paragraph(err, "unilearn evaluate")
    assert (
        status == 2
        and f"{ckpt}: not a readable PyTorch checkpoint (torch.load with weights_only=True" in last
    )


def test_truncated_init_checkpoint_of_finetune_names_the_file(store, tmp_path, capsys):
    ckpt = tmp_path / "init.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, ckpt)
    _truncate(ckpt, 0.3)
    status, err = _run(capsys, _finetune(store, tmp_path / "ft", "--init", str(ckpt)))
    assert status == 2 and str(ckpt) in _one_paragraph(err, "unilearn finetune")


# -- store tables and manifests ---------------------------------------------------------------


def test_missing_store_table_names_it(tmp_path, capsys):
    empty = tmp_path / "store"
    empty.mkdir()
    status, err = _run(capsys, _finetune(empty, tmp_path / "ft"))
    last = _one_paragraph(err, "unilearn finetune")
    assert status == 2 and f"{empty}/dfew.parquet: store table missing" in last


def _store_copy(store: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy


def test_truncated_store_table_names_it(store, tmp_path, capsys):
    copy = _store_copy(store, tmp_path)
    _truncate(copy / "dfew.parquet")
    status, err = _run(capsys, _finetune(copy, tmp_path / "ft"))
    last = _one_paragraph(err, "unilearn finetune")
    assert status == 2 and f"{copy}/dfew.parquet: store table cannot be read (truncated" in last


def test_fold_without_training_rows_names_the_table_and_fold(store, tmp_path, capsys):
    copy = _store_copy(store, tmp_path)
    table = pd.read_parquet(copy / "dfew.parquet")
    table = table[~((table["fold"] == 1) & (table["split"] == "train"))]
    table.to_parquet(copy / "dfew.parquet")
    status, err = _run(capsys, _finetune(copy, tmp_path / "ft"))
    last = _one_paragraph(err, "unilearn finetune")
    assert status == 2 and "dfew.parquet: no rows for dataset=dfew fold=1 split=train" in last


def test_truncated_manifest_of_preprocess_names_it(store, tmp_path, capsys):
    manifest = tmp_path / "dfew.parquet"
    manifest.write_bytes((store.parent / "manifests" / "dfew.parquet").read_bytes())
    _truncate(manifest, 0.6)
    status, err = _run(capsys, ["preprocess", "--manifest", str(manifest), "--out", str(tmp_path / "s"),
                                "--no-progress"])  # fmt: skip
    last = _one_paragraph(err, "unilearn preprocess")
    assert status == 2 and f"{manifest}: manifest cannot be read (truncated" in last


# -- aggregate --------------------------------------------------------------------------------


def _predictions(path: Path, labels: list[int], preds: list[int], fold: int = 1) -> Path:
    n = len(labels)
    pd.DataFrame({
        "dataset": ["dfew"] * n, "clip_id": [f"{i:05d}" for i in range(n)], "fold": [fold] * n, "split": ["test"] * n,
        "label": labels, "pred": preds, "scores": [[1.0] * 7] * n, "config_hash": ["h"] * n,
        "experiment": ["videomae"] * n, "head": ["dfer"] * n,
    }).to_parquet(path)  # fmt: skip
    return path


def test_aggregate_label_outside_the_label_set_names_the_file(tmp_path, capsys):
    good = _predictions(tmp_path / "fold1.parquet", [0, 1, 2], [0, 1, 1])
    bad = _predictions(tmp_path / "fold2.parquet", [0, 7, 3], [0, 1, 3], fold=2)
    status, err = _run(
        capsys, ["aggregate", str(good), str(bad), "--out", str(tmp_path / "a.json")]
    )
    last = _one_paragraph(err, "unilearn aggregate")
    assert status == 2
    assert f"{bad}: clip '00001' has label 7 / prediction 1, outside the 7 dfew classes 0-6" in last
    assert not (tmp_path / "a.json").exists()


def test_aggregate_truncated_or_missing_predictions_name_the_file(tmp_path, capsys):
    trunc = _truncate(_predictions(tmp_path / "fold1.parquet", [0, 1], [0, 1]))
    status, err = _run(capsys, ["aggregate", str(trunc), "--out", str(tmp_path / "a.json")])
    assert status == 2 and f"{trunc}: predictions file cannot be read" in _one_paragraph(
        err, "unilearn aggregate"
    )
    status, err = _run(
        capsys, ["aggregate", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "a.json")]
    )
    assert status == 2 and "x.parquet: predictions file not found" in _one_paragraph(
        err, "unilearn aggregate"
    )


# -- failed runs, debug -----------------------------------------------------------------------


def test_nan_loss_of_a_real_run_is_status_1_naming_the_kept_checkpoint(store, tmp_path, capsys):
    out = tmp_path / "ft"
    status, err = _run(capsys, _finetune(store, out, "finetune.epochs=2", "finetune.blr=1e30"))
    last = _one_paragraph(err, "unilearn finetune", kind="failed")
    assert status == EXIT_FAILED_RUN and "loss is nan at step " in last
    assert f"{out}/last.pt is kept" in last and "UNILEARN_DEBUG=1" in last


def test_a_validation_split_with_no_clip_is_bad_input_naming_the_key(store, tmp_path, capsys):
    argv = [
        a for a in _finetune(store, tmp_path / "ft") if a != "finetune.selection.validation=null"
    ]
    status, err = _run(capsys, argv)
    last = _one_paragraph(err, "unilearn finetune")
    assert status == 2 and "finetune.selection.validation=0.1: holds out no clip" in last


def test_nan_loss_is_a_failed_run_with_status_1():
    from unilearn.engine.step import NonFiniteLossError, check_finite

    def nan_run() -> int:
        check_finite(float("nan"), 17, "run/last.pt")
        return 0

    lines: list[str] = []

    class Err:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    assert run_reporting(nan_run, "unilearn finetune", stream=Err()) == EXIT_FAILED_RUN
    said = "".join(lines)
    assert said.startswith("unilearn finetune: failed: loss is nan at step 17")
    assert "run/last.pt is kept" in said and "UNILEARN_DEBUG=1" in said
    assert exit_status(NonFiniteLossError("x")) == 1


def test_unforeseen_errors_are_status_1_with_their_type():
    assert exit_status(KeyError("fold")) == EXIT_FAILED_RUN
    assert message(KeyError("fold"), "unilearn x") == "unilearn x: failed: KeyError: 'fold'"
    assert exit_status(InputError("a.csv line 3: bad")) == EXIT_BAD_INPUT
    assert message(InputError("a.csv\n  line 3: bad"), "unilearn x") == (
        "unilearn x: bad input: a.csv line 3: bad"
    )


def test_debug_flag_and_environment_show_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNILEARN_DEBUG", "0")  # "0" is off; restored after (--debug sets it)
    status, err = _run(capsys, ["--debug", "aggregate", str(tmp_path / "x.parquet"),
                                "--out", str(tmp_path / "a.json")])  # fmt: skip
    assert status == 2 and "Traceback" in err and err.strip().endswith("predictions file not found")
    monkeypatch.setenv("UNILEARN_DEBUG", "1")
    status, err = _run(
        capsys, ["aggregate", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "a.json")]
    )
    assert status == 2 and "Traceback" in err


def test_bad_input_through_the_submitit_launcher_reaches_the_user_the_same_way(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  epochz: 3\n")
    cmd = [sys.executable, "-m", "unilearn.launch", "finetune", "--config", DEMO,
           "--submitit-cluster", "local", "--slurm-folder", str(tmp_path / "slurm"), "--",
           "--config", str(bad), "--experiment", "videomae", "--dataset", "dfew", "--fold", "1",
           "--store", str(tmp_path), "--out", str(tmp_path / "ft")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("unilearn finetune: bad input: ") and str(bad) in last and "epochz" in last
    )


def test_launcher_config_error_is_one_paragraph_with_status_2(tmp_path):
    cmd = [sys.executable, "-m", "unilearn.launch", "finetune", "--config",
           str(tmp_path / "nope.yaml"), "--", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"python -m unilearn.launch: bad input: {tmp_path / 'nope.yaml'}: config file not found"
    )


# -- a damaged test set -----------------------------------------------------------------------


def _tiny_checkpoint(path: Path) -> Path:
    from unilearn.catalogue import DATASETS, LABEL_SETS
    from unilearn.models import create_model, save_checkpoint

    model = create_model("vit_tiny_patch16_64", num_classes=7, num_frames=4, img_size=32,
                         embed_dim=96, num_heads=3)  # fmt: skip
    labels = list(LABEL_SETS[DATASETS["dfew"].label_set].classes)
    save_checkpoint(
        path, model, {"labels": {"dfer": labels}, "frame_stride": 2, "experiment": "videomae"}
    )
    return path


def _test_rows(store: Path) -> pd.DataFrame:
    from unilearn.data.store import load_store_table

    return load_store_table(store, "dfew", 1, "test")


def test_evaluate_on_a_truncated_store_shard_fails_naming_the_shard(store, tmp_path, capsys):
    copy = _store_copy(store, tmp_path)
    keys = [k.rpartition(":") for k in _test_rows(copy).store_key]
    shards = sorted({shard for shard, _, _ in keys})
    for shard in shards:  # cut before its first test record (a copy that stopped early)
        first = min(int(offset) for s, _, offset in keys if s == shard)
        data = (copy / shard).read_bytes()
        (copy / shard).write_bytes(data[: min(first, int(len(data) * 0.4))])
    ckpt = _tiny_checkpoint(tmp_path / "model.pt")
    status, err = _run(capsys, _evaluate(copy, ckpt, tmp_path / "p.parquet"))
    last = _one_paragraph(err, "unilearn evaluate", kind="failed")
    assert status == EXIT_FAILED_RUN
    assert "none of the" in last and "test clips could be read" in last
    assert all(shard in last for shard in shards)
    assert (tmp_path / "p.quarantine.parquet").is_file()  # written before the failure


def test_one_damaged_test_record_fails_the_test_naming_clip_and_key(
    store, tmp_path, capsys, caplog
):
    copy = _store_copy(store, tmp_path)
    rows = _test_rows(copy)
    clip, key = rows.clip_id.iloc[1], rows.store_key.iloc[1]
    shard, _, offset = key.rpartition(":")
    with open(copy / shard, "r+b") as f:  # the record's header no longer reads as one
        f.seek(int(offset))
        f.write(b"XXXX")
    ckpt = _tiny_checkpoint(tmp_path / "model.pt")
    status, err = _run(capsys, _evaluate(copy, ckpt, tmp_path / "p.parquet"))
    last = _one_paragraph(err, "unilearn evaluate", kind="failed")
    assert status == EXIT_FAILED_RUN
    assert f"1 of {len(rows)} test clips unreadable" in last and "max_unreadable=0" in last
    assert f"clip {clip} ({key})" in last

    # allowed by evaluate.max_unreadable: the job succeeds, says so, and the metrics record it
    status, err = _run(capsys, [*_evaluate(copy, ckpt, tmp_path / "q.parquet"),
                                "evaluate.max_unreadable=1"])  # fmt: skip
    assert status == 0
    assert f"clip {clip} ({key})" in caplog.text  # the warning names it too
    metrics = __import__("json").loads((tmp_path / "q.metrics.json").read_text())
    assert (metrics["n_clips"], metrics["n_unreadable"], metrics["n"]) == (
        len(rows),
        1,
        len(rows) - 1,
    )


def test_finetune_whose_test_lost_a_clip_fails_or_records_it(store, tmp_path, capsys):
    """The fine-tuning job's own test: past evaluate.max_unreadable it fails (exit 1) naming the
    clip; allowed, every prediction's metrics record n_clips and n_unreadable."""
    copy = _store_copy(store, tmp_path)
    rows = _test_rows(copy)
    clip, key = rows.clip_id.iloc[0], rows.store_key.iloc[0]
    shard, _, offset = key.rpartition(":")
    with open(copy / shard, "r+b") as f:
        f.seek(int(offset))
        f.write(b"XXXX")
    status, err = _run(capsys, _finetune(copy, tmp_path / "strict", "--test", "dfew"))
    last = _one_paragraph(err, "unilearn finetune", kind="failed")
    assert status == EXIT_FAILED_RUN and f"clip {clip} ({key})" in last

    out = tmp_path / "allowed"
    argv = _finetune(copy, out, "evaluate.max_unreadable=1", "--test", "dfew")
    assert _run(capsys, argv)[0] == 0
    for sidecar in sorted(out.glob("pred-dfew*.metrics.json")):
        metrics = __import__("json").loads(sidecar.read_text())
        assert (metrics["n_clips"], metrics["n_unreadable"]) == (len(rows), 1), sidecar
    assert sorted(p.name for p in out.glob("pred-dfew*.metrics.json"))
