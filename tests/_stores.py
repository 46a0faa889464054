"""A tiny clip store built in tests: DFEW-like frame folders (2 folds), AffectNet-like images
(8 classes, contempt included) and VoxCeleb2-like mp4s, preprocessed at a small short side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _media import manifest_frame, manifest_row, moving_pattern, write_frames, write_mp4
from PIL import Image

from unilearn.data.preprocess import PreprocessSettings, preprocess

SHORT_SIDE = 40


def build_tiny_store(root: Path, n_dfer: int = 12, n_images: int = 40, n_videos: int = 4) -> Path:
    src, manifests, store = root / "src", root / "manifests", root / "store"
    manifests.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_dfer):
        clip = write_frames(src / "dfew" / f"{i:05d}", moving_pattern(6 + 3 * i, 48, seed=i))
        for fold in (1, 2):
            split = "test" if i % 2 == fold - 1 and i % 3 == 0 else "train"
            rows.append(
                manifest_row("dfew", f"{i:05d}", clip, "frames", i % 7, 6 + 3 * i, split, fold)
            )
    manifest_frame(rows).to_parquet(manifests / "dfew.parquet")
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        path = src / "affectnet" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (56, 48, 3), dtype=np.uint8)).save(path)
        rows.append(
            manifest_row(
                "affectnet",
                str(i),
                path,
                "image",
                i % 8,
                1,
                "train" if i < n_images - 8 else "test",
            )
        )
    manifest_frame(rows).to_parquet(manifests / "affectnet.parquet")
    rows = []
    for i in range(n_videos):
        path = write_mp4(
            src / "voxceleb2" / f"id{i}" / "yt" / "00001.mp4", moving_pattern(20, 48, seed=100 + i)
        )
        rows.append(manifest_row("voxceleb2", f"id{i}/yt/00001", path, "video", -1, 20, "train"))
    manifest_frame(rows).to_parquet(manifests / "voxceleb2.parquet")
    for name in ("dfew", "affectnet", "voxceleb2"):
        preprocess(
            manifests / f"{name}.parquet",
            store,
            PreprocessSettings(
                short_side=SHORT_SIDE, frame_stride=1, framing="default", codec="jpeg"
            ),
            workers=0,
            progress=False,
        )
    return store


# ---- the loaders as the engine builds them: the config's defaults, a test's keys over them -------

_MODEL_KEYS, _DATA_KEYS = {"num_frames", "input_size"}, {"num_workers"}
_PRETRAIN_MODES = {
    ("affectnet", "voxceleb2"): "image+video",
    ("voxceleb2", "voxceleb2"): "video+video",
    (None, "voxceleb2"): "video",
    ("affectnet", None): "image",
}


def _config(stage: str, keys: dict):
    """A config as the engine reads it: the sections' defaults with `keys` (model, data, seed and
    the stage's section keys, by name) over them."""
    from types import SimpleNamespace

    from unilearn.config.data import DataConfig
    from unilearn.config.model import ModelConfig
    from unilearn.config.training import FinetuneConfig, PretrainConfig

    pick = lambda names: {k: keys[k] for k in names if k in keys}  # noqa: E731
    section = {"finetune": FinetuneConfig, "pretrain": PretrainConfig}[stage]
    rest = {k: v for k, v in keys.items() if k not in _MODEL_KEYS | _DATA_KEYS | {"seed"}}
    return SimpleNamespace(
        model=ModelConfig(**pick(_MODEL_KEYS)),
        data=DataConfig(**pick(_DATA_KEYS)),
        seed=keys.get("seed", 0),
        **{stage: section(**rest)},
    )


def finetune_loader(store, dfer, sfer, *, fold=None, holdout=None, rank=0, world_size=1, **keys):
    """`build_finetune_loader` of the engine's spec (`unilearn.engine.loader.finetune_spec`)."""
    from unilearn.config.schema import ResolvedExperiment
    from unilearn.data.loaders import build_finetune_loader
    from unilearn.engine.loader import fetch_ahead, finetune_spec

    cfg = _config("finetune", keys)
    tasks = tuple(t for t, d in (("sfer", sfer), ("dfer", dfer)) if d)
    resolved = ResolvedExperiment(name="test", dataset=dfer or sfer, arch="vit", pretrain_mode="none",
                                  tasks=tasks, dfer_dataset=dfer, sfer_dataset=sfer, labels={},
                                  model_name="", config=cfg)  # fmt: skip
    spec = finetune_spec(
        cfg,
        resolved,
        fold,
        Path(store),
        holdout,
        rank=rank,
        world_size=world_size,
        pin_memory=False,
    )
    return build_finetune_loader(spec, fetch_ahead())


def pretrain_loader(store, image, video, *, rank=0, world_size=1, **keys):
    """`build_pretrain_loader` of the engine's spec (`unilearn.engine.loader.pretrain_spec`)."""
    from unilearn.data.loaders import build_pretrain_loader
    from unilearn.engine.loader import fetch_ahead, pretrain_spec

    spec = pretrain_spec(
        _config("pretrain", keys),
        _PRETRAIN_MODES[image, video],
        Path(store),
        rank=rank,
        world_size=world_size,
        pin_memory=False,
    )
    return build_pretrain_loader(spec, fetch_ahead())


def eval_loader(store, dataset, **keys):
    """`build_eval_loader` with the config's defaults (`evaluate:`, `model:`, `data:`) for the
    keys a test leaves out, as `unilearn.engine.scoring.test_loader` fills them."""
    from unilearn.config.data import DataConfig
    from unilearn.config.model import ModelConfig
    from unilearn.config.training import EvaluateConfig, FinetuneConfig
    from unilearn.data.loaders import build_eval_loader

    m, ev = ModelConfig(), EvaluateConfig()
    defaults = {
        "fold": None,
        "split": "test",
        "task": "dfer",
        "num_frames": m.num_frames,
        "input_size": m.input_size,
        "batch_size": ev.batch_size,
        "num_workers": DataConfig().num_workers,
        "n_clips": ev.n_clips,
        "frame_stride": FinetuneConfig().frame_stride,
        "rank": 0,
        "world_size": 1,
        "holdout": None,
        "placement_seed": None,
    }
    return build_eval_loader(store, dataset, **(defaults | keys))
