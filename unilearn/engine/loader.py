"""The config -> a run's training set, and how the engines walk it so that a run resumes exactly.

`finetune_spec` / `pretrain_spec` build the ONE typed value a loader takes
(`unilearn.data.loader_spec`: every field from the config section, where each default is written
once; the SFER share `ResolvedExperiment.sfer_fraction`), read by the engine's
`finetune_data` / `pretrain_data` and by `unilearn config` (its steps per epoch). The training set
(`unilearn.data.loaders.TrainSet`) is ONE DataLoader for the whole run over the batches from the
resume step to the last step: epoch e's batches come from a batch sampler that is a pure function
of (seed, e), every item carries its own sample seed, and resuming skips batches by index, so the
step count in `last.pt` is the whole resume position.

Torch-free at import (`unilearn config` reads the specs).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path

from unilearn.catalogue import pretrain_sources
from unilearn.data.loader_spec import FinetuneLoaderSpec, PretrainLoaderSpec
from unilearn.engine.prefetch import Prefetcher

PREFETCH = 2  # batches a background thread fetches ahead (`unilearn.engine.prefetch`)


def rest_of_epoch(batches: Iterator[dict], step: int, end_step: int, steps_per_epoch: int):
    """The run's next batches up to the end of the epoch that step `step` is in (or `end_step`)."""
    return itertools.islice(batches, min(steps_per_epoch - step % steps_per_epoch, end_step - step))


def check_epoch_ended(step: int, end_step: int, steps_per_epoch: int) -> None:
    """After an epoch's batches: the run is at an epoch end or at its last step, else the data
    ran out early (a sampler whose `len` promised more batches than it gave)."""
    if step % steps_per_epoch and step != end_step:
        raise RuntimeError(
            f"the training data ran out at step {step} of {end_step} "
            f"({steps_per_epoch} batches per epoch expected)"
        )


def finetune_spec(
    cfg,
    resolved,
    fold: int | None,
    store: Path,
    holdout,
    *,
    rank: int,
    world_size: int,
    pin_memory: bool,
) -> FinetuneLoaderSpec:
    """The fine-tuning loader of a run (`resolved`: its datasets; `cfg` its config, the
    per-dataset `finetune:` applied): the DFER train split of (dataset, fold) and the SFER
    share `resolved.sfer_fraction` of the SFER train split."""
    dfer, sfer = resolved.dfer_dataset, resolved.sfer_dataset
    run = {"dfer_dataset": dfer, "sfer_dataset": sfer, "fold": fold, "holdout": holdout}
    shard = {"rank": rank, "world_size": world_size, "pin_memory": pin_memory}
    share = resolved.sfer_fraction
    return _from_config(
        FinetuneLoaderSpec, cfg.finetune, cfg, store, **run, **shard, sfer_fraction=share
    )


def pretrain_spec(
    cfg, mode: str, store: Path, *, rank: int, world_size: int, pin_memory: bool
) -> PretrainLoaderSpec:
    """The pre-training loader of a mode: image batches (AffectNet, or VoxCeleb2 frames for
    video+video) and/or video batches (VoxCeleb2)."""
    pt = cfg.pretrain
    image, video = pretrain_sources(mode, pt.image_dataset, pt.video_dataset)
    shard = {"rank": rank, "world_size": world_size, "pin_memory": pin_memory}
    return _from_config(
        PretrainLoaderSpec, pt, cfg, store, image_dataset=image, video_dataset=video, **shard
    )


def _from_config(spec_type, section, cfg, store: Path, **run):
    """A `spec_type` of the run's own values `run` (+ the store and the seed); every other field
    is the config key of that name: of the stage's `section`, else `model:`, else `data:`."""
    values = {"store": Path(store), "seed": cfg.seed, **run}
    for field in dataclasses.fields(spec_type):
        if field.name in values:
            continue
        owner = next(
            (s for s in (section, cfg.model, cfg.data) if field.name in type(s).model_fields), None
        )
        if owner is None:
            raise TypeError(f"{spec_type.__name__}.{field.name}: no config key of that name")
        values[field.name] = getattr(owner, field.name)
    return spec_type(**values)


def finetune_data(cfg, resolved, fold: int | None, store: Path, info, holdout=None):
    """The joint training set of a run (`finetune_spec`, this rank's shard), batches from one
    source at a time, read ahead by a thread: a `unilearn.data.loaders.TrainSet`."""
    from unilearn.data.loaders import build_finetune_loader

    spec = finetune_spec(
        cfg,
        resolved,
        fold,
        store,
        holdout,
        rank=info.rank,
        world_size=info.world_size,
        pin_memory=_pins(cfg, info),
    )
    return build_finetune_loader(spec, fetch_ahead())


def pretrain_data(cfg, mode: str, store: Path, info):
    """The pre-training set of a mode (`pretrain_spec`, this rank's shard), one modality per
    batch, read ahead by a thread: a `unilearn.data.loaders.TrainSet`."""
    from unilearn.data.loaders import build_pretrain_loader

    spec = pretrain_spec(
        cfg, mode, store, rank=info.rank, world_size=info.world_size, pin_memory=_pins(cfg, info)
    )
    return build_pretrain_loader(spec, fetch_ahead())


def fetch_ahead(depth: int = PREFETCH):
    """How a training set reads its DataLoader ahead: a thread `depth` batches ahead (0: none)."""
    return functools.partial(Prefetcher, depth=depth)


def _pins(cfg, info) -> bool:
    return cfg.data.pin_memory and info.device.type == "cuda"
