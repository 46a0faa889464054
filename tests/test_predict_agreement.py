"""A model trained through the command line on the synthetic data (`unilearn synth --preset tiny`
-> manifest -> preprocess -> a short `unilearn finetune` -> `unilearn evaluate`) predicts the
synthetic test clips through `unilearn predict`, from the raw frame folders, exactly as
`unilearn evaluate` scores them from the clip store: clip by clip the same top class and the same
probabilities (same face-clip code, same JPEG round trip, same clip sampling, same forward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unilearn.cli import main as cli
from unilearn.models.checkpoint import read_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SHORT_SIDE = 40
FOLD = 1


@pytest.fixture(scope="module")
def trained(manifests_tiny, tmp_path_factory) -> dict[str, Path]:
    """Store, fine-tuned checkpoint and `unilearn evaluate` predictions for DFEW fold 1."""
    work = tmp_path_factory.mktemp("predict_agreement")
    store, run = work / "store", work / "run"
    for dataset in ("dfew", "affectnet7"):
        assert cli(["preprocess", "--manifest", str(manifests_tiny / f"{dataset}.parquet"),
                    "--out", str(store), "--short-side", str(SHORT_SIDE), "--workers", "0",
                    "--no-progress"]) == 0  # fmt: skip
    # 28 training clips: a 10% hold-out would hold out none
    tiny = ["finetune.epochs=2", "finetune.batch_size=8", "model.input_size=32",
            "model.num_frames=4", "model.moae.n_experts=2",
            "finetune.selection.validation=null"]  # fmt: skip
    assert cli(["finetune", "--config", str(CONFIG), "--experiment", "unilearn", "--dataset",
                "dfew", "--fold", str(FOLD), "--store", str(store), "--out", str(run),
                "--wandb", "disabled", "--no-progress", *tiny]) == 0  # fmt: skip
    pred = work / "pred-dfew.parquet"
    assert cli(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--store", str(store),
                "--dataset", "dfew", "--fold", str(FOLD), "--out", str(pred), "--wandb",
                "disabled", "--no-progress"]) == 0  # fmt: skip
    return {"store": store, "checkpoint": run / "checkpoint.pt", "evaluate": pred, "work": work}


@pytest.mark.slow
def test_predict_agrees_with_evaluate_clip_by_clip(trained):
    evaluated = pd.read_parquet(trained["evaluate"])
    stored = pd.read_parquet(trained["store"] / "dfew.parquet")
    paths = stored.drop_duplicates("clip_id").set_index("clip_id")["path"]
    frame_folders = [paths[c] for c in evaluated["clip_id"]]
    meta = read_checkpoint(trained["checkpoint"])["meta"]
    assert meta.get("preprocess", {}).get("short_side") == SHORT_SIDE, (
        "unilearn finetune must record the store's settings.json in meta.preprocess "
        "(docs/ARCHITECTURE.md), so predict needs no config file"
    )
    out = trained["work"] / "predict.parquet"
    # DFEW is distributed face-cropped: preprocess only resized it, so predict does too. No
    # preprocessing flags: the checkpoint says how its store was built.
    rc = cli(["predict", str(trained["checkpoint"]), *frame_folders, "--crop", "none",
              "--batch-size", "5", "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    predicted = pd.read_parquet(out)
    assert list(predicted["input"]) == frame_folders and set(predicted["status"]) == {"ok"}
    assert set(predicted["kind"]) == {"frames"} and set(predicted["head"]) == {"dfer"}

    classes = [f"prob_{c}" for c in ("happy", "sad", "neutral", "angry", "surprise", "disgust",
                                     "fear")]  # fmt: skip
    ours = predicted[classes].to_numpy(np.float32)
    theirs = np.stack(evaluated["scores"].to_list())
    assert ours.shape == theirs.shape == (len(evaluated), 7)
    assert (ours.argmax(1) == evaluated["pred"].to_numpy()).all()  # same top class, clip by clip
    # same pixels and clips; only the batch composition differs (5 vs all clips per forward)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    assert set(predicted["config_hash"]) == set(evaluated["config_hash"])
