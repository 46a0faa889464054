"""The stages end to end on a real (tiny) clip store, through the command line: pre-train ->
joint fine-tune -> 2-clip evaluation -> pooled aggregation. The clips carry a learnable class
signal, so a fine-tuned model must clearly beat chance; the evaluation writes every output the
tables and figures read; two-rank evaluation shards the clips and gives the same predictions."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch.multiprocessing as mp
from _media import manifest_frame, manifest_row, write_frames

from unilearn.cli import main as cli
from unilearn.config import load_config
from unilearn.data.preprocess import PreprocessSettings, preprocess

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
K = 7
# The demo recipe, shorter: a learnable signal needs a few epochs only.
OVERRIDES = [
    "wandb.mode=disabled", "pretrain.epochs=1", "finetune.epochs=12", "finetune.warmup_epochs=1",
    "finetune.batch_size=8", "finetune.blr=0.05", "data.num_workers=0",
]  # fmt: skip


def _clip(label: int, n: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """Noise whose class is a bright block at one of K places, appearing over the clip."""
    frames = rng.integers(0, 110, (n, size, size, 3), dtype=np.uint8)
    s = size // 3
    top, left = (label // 3) * s, (label % 3) * s
    for t in range(n):
        frames[t, top : top + s, left : left + s] = 120 + int(120 * min(1.0, 2 * t / n))
    return frames


@pytest.fixture(scope="module")
def learnable_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learnable")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(84):  # DFER-like: 12 clips per class, fold 1 tests every fourth
        n = int(rng.integers(8, 13))
        folder = write_frames(root / "src/dfew" / f"{i:05d}", _clip(i % K, n, rng))
        split = "test" if i % 4 == 0 else "train"
        rows.append(manifest_row("dfew", f"{i:05d}", folder, "frames", i % K, n, split, 1))
    manifest_frame(rows).to_parquet(root / "dfew.parquet")
    rows = []
    for i in range(56):  # AffectNet-like stills of the same classes (label ids as AffectNet-7)
        path = root / "src/affectnet" / f"{i}.jpg"
        write_frames(path.parent / f"img{i}", _clip(i % K, 1, rng)[-1:])
        (path.parent / f"img{i}" / "1.jpg").rename(path)
        rows.append(
            manifest_row(
                "affectnet", str(i), path, "image", i % K, 1, "test" if i % 8 == 0 else "train"
            )
        )
    manifest_frame(rows).to_parquet(root / "affectnet.parquet")
    for name in ("dfew", "affectnet"):
        preprocess(root / f"{name}.parquet", root / "store", PreprocessSettings(short_side=40, frame_stride=1, framing="default", codec="jpeg"),
                   workers=0, progress=False)  # fmt: skip
    return root / "store"


def _args(cfg_args: list[str]) -> list[str]:
    return ["--config", str(CONFIGS / "demo.yaml"), "--no-progress", *OVERRIDES, *cfg_args]


@pytest.mark.slow
def test_finetune_on_learnable_clips_clearly_beats_chance(learnable_store, tmp_path):
    store = str(learnable_store)
    pt, ft, pred = tmp_path / "pt", tmp_path / "ft", tmp_path / "pred.parquet"
    # `none` keeps it quick; the image+video path is covered by test_resume and the demo
    assert cli(["pretrain", "--mode", "none", "--store", store, "--out", str(pt), *_args([])]) == 0
    # the fine-tuning job tests its own split every 4 epochs and writes the predictions itself
    assert cli(["finetune", "--experiment", "pretrain_none", "--dataset", "dfew", "--fold", "1",
                "--store", store, "--init", str(pt / "checkpoint.pt"), "--out", str(ft),
                "--test", "dfew", "--test", "affectnet7",
                *_args(["finetune.eval_every=4"])]) == 0  # fmt: skip

    table = pd.read_parquet(ft / "pred-dfew.parquet")
    assert len(table) == 21 and set(table.columns) >= {"clip_id", "fold", "label", "pred", "scores",
                                                      "config_hash", "experiment", "head"}  # fmt: skip
    assert np.allclose([s.sum() for s in table.scores], 1.0, atol=1e-5)  # mean of softmaxes
    metrics = json.loads((ft / "pred-dfew.metrics.json").read_text())
    assert metrics["uar"] > 3 / K, (
        f"UAR {metrics['uar']:.2f} is not clearly above chance {1 / K:.2f}"
    )
    assert metrics["n_clips"] == metrics["n"] == 21 and metrics["n_unreadable"] == 0
    usage = json.loads((ft / "pred-dfew.expert_usage.json").read_text())
    n_tokens = 21 * 2 * 8  # clips x test clips x tokens (4 frames at 32^2)
    assert set(usage["layers"]) == {"2", "3"}  # MoAE in the later half of 4 blocks
    assert all(sum(c) == n_tokens * 2 for c in usage["layers"].values())  # top-2 of n experts
    centres = pd.read_parquet(ft / "pred-dfew.centres.parquet")
    assert list(centres.class_id) == list(range(K)) and centres.n.sum() == 21
    meta = __import__("unilearn.models", fromlist=["x"]).model_from_checkpoint(
        ft / "checkpoint.pt"
    )[1]
    assert meta["labels"]["dfer"][0] == "happy" and meta["preprocess"]["short_side"] == 40
    assert meta["config_hash"] == (ft / "config.sha256").read_text().strip() == table.config_hash[0]
    # the starting weights are named by content, for provenance (published weights have no run)
    digest = __import__("hashlib").sha256((pt / "checkpoint.pt").read_bytes()).hexdigest()
    assert meta["init_sha256"] == digest

    # `unilearn evaluate` on the saved weights gives the job's predictions: the same test
    assert cli(["evaluate", "--checkpoint", str(ft / "checkpoint.pt"), "--store", store,
                "--dataset", "dfew", "--fold", "1", "--out", str(pred), "--no-progress",
                "wandb.mode=disabled"]) == 0  # fmt: skip
    again = pd.read_parquet(pred)
    assert list(again.clip_id) == list(table.clip_id) and (again.pred == table.pred).all()
    np.testing.assert_allclose(np.stack(again.scores), np.stack(table.scores), atol=1e-6)

    # tested after epochs 4, 8 and 12 by the authors' pass (one random clip per test video,
    # noisy router) and on the validation split (demo.yaml holds 10% of each class out); each
    # pick is the best epoch by its WAR (the earlier on ties)
    log = [json.loads(line) for line in (ft / "log.jsonl").read_text().splitlines()]
    tested = [r for r in log if "select/war" in r]
    assert [r["epoch"] for r in tested] == [3, 7, 11] and all("val/war" in r for r in tested)
    assert not any("test/war" in r for r in log)  # the 2-clip test runs at the end only
    best = max(tested, key=lambda r: (r["select/war"], -r["epoch"]))
    assert log[-1]["best/epoch"] == best["epoch"] and log[-1]["best/war"] == best["select/war"]
    best_metrics = json.loads((ft / "pred-dfew.best.metrics.json").read_text())
    assert best_metrics["checkpoint_train"]["epoch"] == best["epoch"]
    val = max(tested, key=lambda r: (r["val/war"], -r["epoch"]))
    assert log[-1]["best_val/epoch"] == val["epoch"]
    val_metrics = json.loads((ft / "pred-dfew.val.metrics.json").read_text())
    assert val_metrics["checkpoint_train"]["epoch"] == val["epoch"] and val_metrics["n"] == 21
    best_pred = tmp_path / "best.parquet"
    assert cli(["evaluate", "--checkpoint", str(ft / "checkpoint-best.pt"), "--store", store,
                "--dataset", "dfew", "--fold", "1", "--out", str(best_pred), "--no-progress",
                "wandb.mode=disabled"]) == 0  # fmt: skip
    assert (
        pd.read_parquet(best_pred).pred == pd.read_parquet(ft / "pred-dfew.best.parquet").pred
    ).all()

    # AffectNet-7 (its validation set) is scored with the SFER head, for every weights
    for name in ("pred-affectnet7.parquet", "pred-affectnet7.best.parquet",
                 "pred-affectnet7.val.parquet"):  # fmt: skip
        images = pd.read_parquet(ft / name)
        assert len(images) == 7 and set(images["head"]) == {"sfer"} and images.fold.isna().all()

    out = tmp_path / "pooled.json"
    assert cli(["aggregate", str(ft / "pred-dfew.parquet"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["uar"] == pytest.approx(metrics["uar"])


def test_unreadable_test_clip_is_quarantined_not_replaced(learnable_store, tmp_path):
    """A test clip whose store record cannot be read is never predicted in another clip's place:
    the predictions hold the readable clips, each for itself, and the quarantine the other."""
    import shutil

    from unilearn.data.store import load_store_table
    from unilearn.engine import distributed as D
    from unilearn.engine.scoring import test_loader, test_model, write_predictions
    from unilearn.models import create_model

    store = tmp_path / "store"
    shutil.copytree(learnable_store, store)
    test = load_store_table(store, "dfew", 1, "test")
    broken = test.clip_id[3]
    shard, _, offset = test.store_key[3].rpartition(":")
    with open(store / shard, "r+b") as f:  # the record's header no longer reads as one
        f.seek(int(offset))
        f.write(b"XXXX")

    cfg = load_config(CONFIGS / "demo.yaml", ["evaluate.batch_size=4", "data.num_workers=0"])
    model = create_model("vit_tiny_patch16_64", num_classes=K, num_frames=4, img_size=32,
                         embed_dim=96, num_heads=3)  # fmt: skip
    meta = {"num_frames": 4, "input_size": 32, "frame_stride": 8, "experiment": "x",
            "labels": {"dfer": [f"c{k}" for k in range(K)]}}  # fmt: skip
    info = D.init_distributed("cpu")
    loader = test_loader(cfg, store, "dfew", 1, meta, info)
    result = test_model(model, loader, "dfer", info, None, progress=False)
    out = tmp_path / "pred-dfew.parquet"
    metrics = write_predictions(out, result, meta, "dfew", 1)

    pred = pd.read_parquet(out)
    assert broken not in set(pred.clip_id) and pred.clip_id.is_unique
    assert list(pred.clip_id) == [c for c in test.clip_id if c != broken]
    assert list(pred.label) == [y for c, y in zip(test.clip_id, test.label) if c != broken]
    quarantine = pd.read_parquet(tmp_path / "pred-dfew.quarantine.parquet")
    assert list(quarantine.clip_id) == [broken] and quarantine.reason[0]
    assert (metrics["n_clips"], metrics["n"], metrics["n_unreadable"]) == (21, 20, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evaluate_rank(rank: int, world: int, port: int, argv: list[str]) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))  # fmt: skip
    from unilearn.cli import main

    assert main(argv) == 0


@pytest.mark.slow
def test_two_rank_evaluation_equals_one_rank(learnable_store, tmp_path):
    store = str(learnable_store)
    ft = tmp_path / "ft"
    assert cli(["finetune", "--experiment", "videomae", "--dataset", "dfew", "--fold", "1",
                "--store", store, "--out", str(ft), *_args(["finetune.epochs=1"])]) == 0  # fmt: skip
    argv = ["evaluate", "--checkpoint", str(ft / "checkpoint.pt"), "--store", store, "--dataset",
            "dfew", "--fold", "1", "--no-progress", "wandb.mode=disabled", "--out"]  # fmt: skip
    assert cli([*argv, str(tmp_path / "one.parquet")]) == 0
    mp.spawn(_evaluate_rank, args=(2, _free_port(), [*argv, str(tmp_path / "two.parquet")]),
             nprocs=2, join=True)  # fmt: skip
    one, two = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert list(one.clip_id) == list(two.clip_id)
    assert (one.pred == two.pred).all()
    np.testing.assert_allclose(np.stack(one.scores), np.stack(two.scores), rtol=1e-5, atol=1e-6)
    for suffix in (".metrics.json", ".expert_usage.json"):
        assert (tmp_path / f"one{suffix}").exists() and (tmp_path / f"two{suffix}").exists()
