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
        preprocess(root / f"{name}.parquet", root / "store", PreprocessSettings(short_side=40),
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
    assert cli(["finetune", "--experiment", "pretrain_none", "--dataset", "dfew", "--fold", "1",
                "--store", store, "--init", str(pt / "checkpoint.pt"), "--out", str(ft),
                *_args([])]) == 0  # fmt: skip
    assert cli(["evaluate", "--checkpoint", str(ft / "checkpoint.pt"), "--store", store,
                "--dataset", "dfew", "--fold", "1", "--out", str(pred), "--no-progress",
                "wandb.mode=disabled"]) == 0  # fmt: skip

    table = pd.read_parquet(pred)
    assert len(table) == 21 and set(table.columns) >= {"clip_id", "fold", "label", "pred", "scores",
                                                      "config_hash", "experiment", "head"}  # fmt: skip
    assert np.allclose([s.sum() for s in table.scores], 1.0, atol=1e-5)  # mean of softmaxes
    metrics = json.loads((tmp_path / "pred.metrics.json").read_text())
    assert metrics["uar"] > 3 / K, (
        f"UAR {metrics['uar']:.2f} is not clearly above chance {1 / K:.2f}"
    )
    usage = json.loads((tmp_path / "pred.expert_usage.json").read_text())
    n_tokens = 21 * 2 * 8  # clips x test clips x tokens (4 frames at 32^2)
    assert set(usage["layers"]) == {"2", "3"}  # MoAE in the later half of 4 blocks
    assert all(sum(c) == n_tokens * 2 for c in usage["layers"].values())  # top-2 of n experts
    centres = pd.read_parquet(tmp_path / "pred.centres.parquet")
    assert list(centres.class_id) == list(range(K)) and centres.n.sum() == 21
    meta = __import__("unilearn.models", fromlist=["x"]).model_from_checkpoint(
        ft / "checkpoint.pt"
    )[1]
    assert meta["labels"]["dfer"][0] == "happy" and meta["preprocess"]["short_side"] == 40
    assert meta["config_hash"] == (ft / "config.sha256").read_text().strip() == table.config_hash[0]
    # the starting weights are named by content, for provenance (published weights have no run)
    digest = __import__("hashlib").sha256((pt / "checkpoint.pt").read_bytes()).hexdigest()
    assert meta["init_sha256"] == digest

    # AffectNet-7 (its validation set) is scored with the SFER head of the same checkpoint
    sfer = tmp_path / "sfer.parquet"
    assert cli(["evaluate", "--checkpoint", str(ft / "checkpoint.pt"), "--store", store,
                "--dataset", "affectnet7", "--out", str(sfer), "--no-progress",
                "wandb.mode=disabled"]) == 0  # fmt: skip
    images = pd.read_parquet(sfer)
    assert len(images) == 7 and set(images["head"]) == {"sfer"} and images.fold.isna().all()

    out = tmp_path / "pooled.json"
    assert cli(["aggregate", str(pred), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["uar"] == pytest.approx(metrics["uar"])


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
