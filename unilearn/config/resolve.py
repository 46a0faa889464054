"""One named experiment made concrete for one dataset: its tasks, label sets, pre-training mode,
and the registered model name + flat constructor kwargs (`unilearn.models.create_model`) that the
fine-tune stage builds, all read from the config (defaults live in the schema only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unilearn.catalogue import DFER_DATASETS, FINETUNE_DATASETS, get_label_set, model_name
from unilearn.config.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from unilearn.config.model import ModelConfig
    from unilearn.config.schema import Config


@dataclass(frozen=True)
class ResolvedExperiment:
    """One experiment made concrete for one dataset: what the fine-tune stage builds and trains."""

    name: str
    dataset: str  # the run's dataset (DFER, or affectnet7 for SFER-only)
    arch: str
    pretrain_mode: str
    tasks: tuple[str, ...]
    dfer_dataset: str | None
    sfer_dataset: str | None
    labels: dict[str, list[str]]  # head -> class names ("dfer", "sfer")
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None  # the config with the experiment's overrides applied


def resolve_experiment(config: Config, name: str, dataset: str) -> ResolvedExperiment:
    """Turn experiment `name` fine-tuned for `dataset` into model name, kwargs, tasks, mode.

    `dataset` is the DFER dataset of the run (its head and folds), or `affectnet7` for an
    SFER-only experiment. The SFER dataset of joint runs is `data.sfer_dataset`.
    """
    if name not in config.experiments:
        raise ConfigError(
            f"experiments: unknown experiment {name!r}; known: {sorted(config.experiments)}"
            + did_you_mean(name, config.experiments)
        )
    if dataset not in FINETUNE_DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; expected one of {list(FINETUNE_DATASETS)}")
    exp = config.experiments[name]
    # the dataset's own settings first (e.g. FERV39K's frame stride); the experiment's win
    cfg = config.model_copy(update={"finetune": config.finetune.for_dataset(dataset)})
    cfg = cfg.with_overrides(exp.overrides.items()) if exp.overrides else cfg
    tasks = tuple(exp.tasks)
    if dataset in DFER_DATASETS:
        if "dfer" not in tasks:
            raise ConfigError(
                f"experiments.{name}.tasks={list(tasks)} has no DFER task: fine-tune it with "
                f"--dataset {cfg.data.sfer_dataset}"
            )
        dfer_dataset: str | None = dataset
    else:
        if "dfer" in tasks:
            raise ConfigError(
                f"experiments.{name} trains DFER (tasks={list(tasks)}): fine-tune it on a DFER "
                f"dataset ({list(DFER_DATASETS)}) and evaluate its checkpoint on {dataset}"
            )
        dfer_dataset = None
    sfer_dataset = cfg.data.sfer_dataset if "sfer" in tasks else None

    labels: dict[str, list[str]] = {}
    if dfer_dataset:
        labels["dfer"] = list(get_label_set(dfer_dataset).classes)
    if sfer_dataset:
        labels["sfer"] = list(get_label_set(sfer_dataset).classes)
    name_of_model, model_kwargs = model_spec(cfg.model, exp.arch, labels)
    return ResolvedExperiment(
        name=name,
        dataset=dataset,
        arch=exp.arch,
        pretrain_mode=exp.pretrain,
        tasks=tasks,
        dfer_dataset=dfer_dataset,
        sfer_dataset=sfer_dataset,
        labels=labels,
        model_name=name_of_model,
        model_kwargs=model_kwargs,
        config=cfg,
    )


def model_spec(
    model: ModelConfig, arch: str, labels: Mapping[str, Sequence[str]]
) -> tuple[str, dict[str, Any]]:
    """Registered model name + constructor kwargs of a fine-tune model (`unilearn.models`)."""
    name = model_name(arch, model.size)
    # `head` serves DFER and `head_sfer` SFER; a head without classes is absent (an SFER-only
    # model has num_classes=0), so `model(x, task=batch["task"])` always hits the right one.
    kwargs: dict[str, Any] = {
        "num_classes": len(labels.get("dfer", ())),
        "num_classes_sfer": len(labels.get("sfer", ())),
        "img_size": model.input_size,
        "num_frames": model.num_frames,
        "tubelet_size": model.tubelet_size,
        "drop_path_rate": model.drop_path,
        **model.encoder_kwargs(),
        **model.moae.model_kwargs(arch),
    }
    return name, kwargs


def mae_spec(config: Config) -> tuple[str, dict[str, Any]]:
    """Registered MAE name + kwargs for pre-training (encoder = the fine-tune ViT)."""
    m, p = config.model, config.pretrain
    name = model_name("mae", m.size)
    kwargs = {
        "img_size": m.input_size,
        "num_frames": m.num_frames,
        "tubelet_size": m.tubelet_size,
        "decoder_depth": m.decoder.depth,
        "decoder_embed_dim": m.decoder.width,
        "decoder_num_heads": m.decoder.heads,
        "mask_ratio_video": p.mask_ratio_video,
        "mask_ratio_image": p.mask_ratio_image,
        "masking": p.masking,
        "norm_pix_loss": p.norm_pix_loss,
        **m.encoder_kwargs(),
    }
    return name, kwargs
