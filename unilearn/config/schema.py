"""The config schema: the sections (`unilearn.config.data`, `model`, `training`, `execution`:
strict pydantic models, each default written there once, the code below them takes required
arguments) put together as `Settings` (what one run needs, with the rules that span sections)
and `Config` (a file: settings + named experiments + sweeps).

Import-light on purpose (pydantic, no torch): the Snakefile loads it at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from unilearn.config import resolve
from unilearn.config.data import DataConfig
from unilearn.config.errors import ConfigError, validated
from unilearn.config.execution import LauncherConfig, RuntimeConfig, WandbConfig
from unilearn.config.experiments import PAPER_EXPERIMENTS, SWEEP_KEYS
from unilearn.config.fields import Strict
from unilearn.config.model import ModelConfig
from unilearn.config.overrides import apply_overrides, parse_override
from unilearn.config.report import ReportConfig
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

    def resolve_experiment(self, name: str, dataset: str) -> resolve.ResolvedExperiment:
        """Experiment `name` fine-tuned for `dataset` (`unilearn.config.resolve`)."""
        return resolve.resolve_experiment(self, name, dataset)

    def mae_spec(self) -> tuple[str, dict]:
        """Registered MAE name + kwargs for pre-training (encoder = the fine-tune ViT)."""
        return resolve.mae_spec(self)

    def with_overrides(self, overrides: Iterable[tuple[str, Any]] | Iterable[str]) -> Config:
        """A new Config with `key.sub=value` strings or (key, value) pairs applied. An override
        of `experiments` or `sweeps` is checked as loading checks them (`check_runs`)."""
        pairs = [parse_override(o) if isinstance(o, str) else o for o in overrides]
        cfg = validated(apply_overrides(self.model_dump(mode="python"), pairs, Config), Config)
        if any(key.split(".", 1)[0] in ("experiments", "sweeps") for key, _ in pairs):
            cfg.check_runs()
        return cfg
