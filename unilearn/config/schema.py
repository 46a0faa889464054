"""The config schema: the sections (`unilearn.config.data`, `model`, `training`, `execution`:
strict pydantic models, each default written there once, the code below them takes required
arguments) put together as `Settings` (what one run needs, with the rules that span sections)
and `Config` (a file: settings + named experiments + sweeps), and what a config resolves to for
a run: one named experiment made concrete for one dataset (`ResolvedExperiment`: tasks, label
sets, pre-training mode, the registered model name and its `create_model` kwargs) and the MAE of
pre-training (`Config.mae_spec`).

Import-light on purpose (pydantic, no torch): the Snakefile loads it at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from unilearn.catalogue import (
    DFER_DATASETS,
    FINETUNE_DATASETS,
    get_label_set,
    model_name,
    sfer_fraction,
)
from unilearn.config.base import ConfigError, Strict, did_you_mean, validated
from unilearn.config.data import DataConfig
from unilearn.config.execution import LauncherConfig, ReportConfig, RuntimeConfig, WandbConfig
from unilearn.config.experiments import PAPER_EXPERIMENTS, SWEEP_KEYS
from unilearn.config.model import ModelConfig, plain_kwargs
from unilearn.config.overrides import apply_overrides, parse_override
from unilearn.config.training import EvaluateConfig, Experiment, FinetuneConfig, PretrainConfig


class Settings(Strict):
    """Everything but the experiment catalogue and sweeps (what one run needs)."""

    name: str = "unilearn"  # experiment family; W&B group prefix
    seed: Annotated[int, Field(ge=0)] = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    launcher: LauncherConfig = LauncherConfig()
    wandb: WandbConfig = WandbConfig()
    report: ReportConfig = ReportConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _strided_stores_serve_pretraining_only(self):
        finetuned = {*self.data.dfer_datasets, "affectnet"}
        for dataset, k in self.data.store.frame_stride.items():
            if k > 1 and dataset in finetuned:
                raise ValueError(
                    f"data.store.frame_stride.{dataset}={k}: fine-tuning reads every frame of "
                    f"{dataset}; keep every k-th frame only of data that pre-training alone reads"
                )
            if self.pretrain.frame_stride % k:
                raise ValueError(
                    f"data.store.frame_stride.{dataset}={k} does not divide "
                    f"pretrain.frame_stride={self.pretrain.frame_stride}"
                )
        return self


class Config(Settings):
    """A validated config file: run settings + named experiments + sweeps."""

    experiments: dict[str, Experiment] = Field(
        default_factory=lambda: dict(PAPER_EXPERIMENTS), validate_default=True
    )
    sweeps: dict[str, list[Any]] = {}
    # Seeds of the tables' fine-tunings (`unilearn.report.seeds`): every fine-tuning of a table
    # runs once per seed, and a cell shows the mean +- std over them. null: one seed, `seed`.
    # The run trained with `seed` keeps its plain name; another seed adds `@seed=N` to it.
    seeds: list[Annotated[int, Field(ge=0)]] | None = None
    # Also pre-train once per seed (each seed's fine-tunings start from its own pre-training);
    # false: every seed fine-tunes from the one pre-training of `seed`.
    seeds_pretrain: bool = False

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"expected a non-empty list of distinct seeds, got {v}")
        return v

    @field_validator("experiments", mode="before")
    @classmethod
    def _onto_catalogue(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {**PAPER_EXPERIMENTS, **v}
        return v

    @field_validator("sweeps")
    @classmethod
    def _no_seed_sweep(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "seed" in v:
            raise ValueError("a sweep of `seed`: list the seeds under `seeds:` instead")
        return v

    # -- experiments and sweeps -----------------------------------------------------------------

    def check_runs(self) -> None:
        """Every experiment's overrides and every sweep point apply to these settings (checked
        once, when a file is loaded: not hours later, and not at every `Config` construction)."""
        base = self.model_dump(
            mode="python", exclude=set(Config.model_fields) - set(Settings.model_fields)
        )
        for name, exp in self.experiments.items():
            try:
                validated(apply_overrides(base, exp.overrides.items(), Config), Settings)
            except ConfigError as e:
                raise ConfigError(f"experiments.{name}.overrides: {e}") from None
        for name, values in self.sweeps.items():
            key = SWEEP_KEYS.get(name, name)
            for value in values:
                try:
                    validated(apply_overrides(base, [(key, value)], Config), Settings)
                except ConfigError as e:
                    raise ConfigError(f"sweeps.{name}={value!r}: {e}") from None

    def resolve_experiment(self, name: str, dataset: str) -> ResolvedExperiment:
        """Experiment `name` fine-tuned for `dataset`: model name, kwargs, tasks, mode.

        `dataset` is the DFER dataset of the run (its head and folds), or `affectnet7` for an
        SFER-only experiment. The SFER dataset of joint runs is `data.sfer_dataset`.
        """
        if name not in self.experiments:
            raise ConfigError(
                f"experiments: unknown experiment {name!r}; known: {sorted(self.experiments)}"
                + did_you_mean(name, self.experiments)
            )
        if dataset not in FINETUNE_DATASETS:
            raise ConfigError(
                f"unknown dataset {dataset!r}; expected one of {list(FINETUNE_DATASETS)}"
            )
        exp = self.experiments[name]
        # the dataset's own settings first (e.g. FERV39K's frame stride); the experiment's win
        cfg = self.model_copy(update={"finetune": self.finetune.for_dataset(dataset)})
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
        name_of_model, model_kwargs = cfg.model.model_args(exp.arch, labels)
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

    def mae_spec(self) -> tuple[str, dict[str, Any]]:
        """Registered MAE name + kwargs for pre-training (encoder = the fine-tune ViT; the
        encoder and decoder shapes the size's, changed where `model` says)."""
        m, p = self.model, self.pretrain
        kwargs = {
            "img_size": m.input_size,
            "num_frames": m.num_frames,
            "tubelet_size": m.tubelet_size,
            **m.decoder_kwargs(),
            "mask_ratio_video": p.mask_ratio_video,
            "mask_ratio_image": p.mask_ratio_image,
            "masking": p.masking,
            "norm_pix_loss": p.norm_pix_loss,
            **m.encoder_kwargs(),
        }
        return model_name("mae", m.size), kwargs

    def with_overrides(self, overrides: Iterable[tuple[str, Any]] | Iterable[str]) -> Config:
        """A new Config with `key.sub=value` strings or (key, value) pairs applied. An override
        of `experiments` or `sweeps` is checked as loading checks them (`check_runs`)."""
        pairs = [parse_override(o) if isinstance(o, str) else o for o in overrides]
        cfg = validated(apply_overrides(self.model_dump(mode="python"), pairs, Config), Config)
        if any(key.split(".", 1)[0] in ("experiments", "sweeps") for key, _ in pairs):
            cfg.check_runs()
        return cfg


# -- a run's experiment ------------------------------------------------------------------------
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
    # `create_model(model_name, **model_kwargs)`; a mixture's `moae` is the config's MoAEConfig
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None  # the config with the experiment's overrides applied

    def plain_model_kwargs(self) -> dict[str, Any]:
        """`model_kwargs` as written down (`unilearn config`, the checkpoint meta)."""
        return plain_kwargs(self.model_kwargs)

    @property
    def sfer_fraction(self) -> float:
        """The share of the SFER train split an epoch trains on: `finetune.sfer_proportion` when
        both tasks train, all of it when SFER trains alone (`catalogue.sfer_fraction`). The
        loader spec, `unilearn config` and the Slurm time estimate all read this one value."""
        proportion = self.config.finetune.sfer_proportion
        return sfer_fraction(proportion, bool(self.dfer_dataset), bool(self.sfer_dataset))
