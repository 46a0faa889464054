"""The typed run configuration: YAML files -> validated `Config`, `key.sub=value` overrides, the
config hash, and the resolution of one named experiment (a baseline or ablation of the paper) into
a concrete model name, model kwargs, tasks and pre-training mode.

One module per concern: the sections with their defaults and rules (`data`, `model`, `training`,
`execution`, built on the strict base, shared fields and `ConfigError` of `base`), `schema` (the
sections together as `Settings` and `Config`, and an experiment resolved for a run),
`experiments` (the paper's catalogue), `overrides` (the dotted override language, file merging),
`loading` (files in, resolved config out, the config hash).
Import-light on purpose (pydantic + PyYAML, no torch): the Snakefile loads it at parse time.
"""

from unilearn.config.base import ConfigError
from unilearn.config.data import DataConfig
from unilearn.config.execution import (
    BootstrapConfig,
    LauncherConfig,
    RuntimeConfig,
    SlurmConfig,
    TimeEstimateConfig,
    WandbConfig,
)
from unilearn.config.experiments import PAPER_EXPERIMENTS, SWEEP_KEYS
from unilearn.config.loading import canonical_json, config_hash, load_config, save_resolved, to_yaml
from unilearn.config.model import (
    MIXTURE_ARCHS,
    DecoderConfig,
    MoAEConfig,
    ModelConfig,
    plain_kwargs,
    typed_kwargs,
)
from unilearn.config.overrides import parse_override
from unilearn.config.schema import Config, ResolvedExperiment, Settings
from unilearn.config.training import EvaluateConfig, Experiment, FinetuneConfig, PretrainConfig

__all__ = [
    "MIXTURE_ARCHS",
    "BootstrapConfig",
    "PAPER_EXPERIMENTS",
    "SWEEP_KEYS",
    "Config",
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "EvaluateConfig",
    "Experiment",
    "FinetuneConfig",
    "LauncherConfig",
    "ModelConfig",
    "MoAEConfig",
    "PretrainConfig",
    "ResolvedExperiment",
    "RuntimeConfig",
    "Settings",
    "SlurmConfig",
    "TimeEstimateConfig",
    "WandbConfig",
    "canonical_json",
    "config_hash",
    "load_config",
    "parse_override",
    "save_resolved",
    "plain_kwargs",
    "to_yaml",
    "typed_kwargs",
]
