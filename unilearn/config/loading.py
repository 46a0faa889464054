"""Config files in and out: `load_config` (YAML files deep-merged in order, overrides, validation
with every mistake reported at once, then the experiments and sweep points checked once), and the
resolved `config.yaml` / `config.sha256` a run directory records, and the config hash: sha256 of
the canonical resolved config, per stage without the sections that stage does not read, so that
e.g. changing fine-tuning epochs does not invalidate a pre-training run (run directories record
it; resuming checks it).

Files are deep-merged in the order given (later wins), so machine-specific dataset roots live in a
separate file: `--config configs/paper.yaml --config configs/local.yaml`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unilearn.config.base import ConfigError, error_lines, validated
from unilearn.config.overrides import apply_overrides, deep_merge, parse_override, unknown_keys
from unilearn.config.schema import Config, ResolvedExperiment
from unilearn.layout import RUN_FILES

# -- the config hash ---------------------------------------------------------------------------
# Sections a stage's result does not depend on (besides `launcher` and `wandb`, which only decide
# where a run executes and logs). Fine-tuning sees pre-training only through its checkpoint.
_NOT_HASHED = {
    None: set(),
    "pretrain": {
        "finetune",
        "evaluate",
        "experiments",
        "sweeps",
        "seeds",
        "seeds_pretrain",
        "report",
    },
    # the fine-tuning job also runs the test (evaluate.*): it reads that section
    "finetune": {"pretrain", "experiments", "sweeps", "seeds", "seeds_pretrain", "report"},
}
# Keys of the workflow's fan-out, hashed (for the tables) only when set: a config without them
# keeps the hash it had before they existed. A run trains with one seed: `seed`.
_FAN_OUT_DEFAULTS = {"seeds": None, "seeds_pretrain": False}


def config_hash(
    cfg: Config, stage: str | None = None, experiment: ResolvedExperiment | None = None
) -> str:
    """sha256 of the canonical resolved config (sorted-key JSON), without `launcher` and `wandb`;
    for a `stage` (pretrain, finetune) also without the sections that stage does not read, so
    e.g. changing fine-tuning epochs does not invalidate a pre-training run. A fine-tuning hashes
    the `experiment` it trains (architecture, pre-training mode, tasks; its overrides are already
    in `cfg`), not the whole `experiments` section: editing one experiment re-runs that one only."""
    return hashlib.sha256(canonical_json(cfg, stage, experiment).encode()).hexdigest()


def canonical_json(
    cfg: Config, stage: str | None = None, experiment: ResolvedExperiment | None = None
) -> str:
    """The hashed text: sorted-key, compact, ASCII JSON of what `stage` reads."""
    exclude: dict[str, Any] = dict.fromkeys({"launcher", "wandb"} | _NOT_HASHED[stage], True)
    exclude["runtime"] = {"log_every"}  # how often a run reports, not what it computes
    data = cfg.model_dump(mode="json", exclude=exclude)
    # Published weights replace a mode's pre-training: naming them changes no pre-training we run.
    data.get("pretrain", {}).pop("init", None)
    for key, default in _FAN_OUT_DEFAULTS.items():
        if data.get(key, default) == default:
            data.pop(key, None)
    if experiment is not None:
        data["experiment"] = {"arch": experiment.arch, "pretrain": experiment.pretrain_mode,
                              "tasks": list(experiment.tasks)}  # fmt: skip
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# -- files in and out ---------------------------------------------------------------------------
def load_config(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    overrides: Iterable[str] = (),
) -> Config:
    """Load one or more YAML files (deep-merged in order, later wins), apply `key.sub=value`
    overrides, validate. Every error names the file or override and the dotted key."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("no config file given")
    overrides = list(overrides)
    merged: dict[str, Any] = {}
    # every mistake of every file at once: unknown keys (with a did-you-mean) first, then the
    # values pydantic refuses
    problems: list[str] = []
    for path in paths:
        raw = _read_yaml(Path(path))
        problems += [f"{path}: {p}" for p in unknown_keys(raw, Config)]
        merged = deep_merge(merged, raw)
    where = " + ".join(str(p) for p in paths)
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as e:
        problems += [f"{where}: {p}" for p in error_lines(e, skip_unknown=bool(problems))]
    if problems:
        raise ConfigError(
            problems[0]
            if len(problems) == 1
            else f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    pairs = [parse_override(o) for o in overrides]
    final = cfg
    try:
        if pairs:
            final = validated(apply_overrides(cfg.model_dump(mode="python"), pairs, Config), Config)
        # once per load, on the final config: every experiment and sweep point must resolve
        final.check_runs()
    except ConfigError as e:
        # (error path only) a mistake the files make on their own is theirs, not the overrides'
        own = _runs_error(cfg) if pairs else e
        if own is None:
            raise ConfigError(f"{where} with overrides {overrides}: {e}") from None
        raise ConfigError(f"{where}: {own}") from None
    return final


def _runs_error(cfg: Config) -> ConfigError | None:
    try:
        cfg.check_runs()
    except ConfigError as e:
        return e
    return None


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (what every run directory records as `config.yaml`)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


def save_resolved(
    cfg: Config, run_dir: str | os.PathLike, stage: str | None = None, experiment=None
) -> str:
    """Write `config.yaml` and `config.sha256` (of `stage` and the fine-tuned `experiment`, see
    `config_hash`) into `run_dir` (atomically); return the hash."""
    from unilearn.atomic import write_text

    run_dir = Path(run_dir)
    digest = config_hash(cfg, stage, experiment)
    write_text(run_dir / RUN_FILES["config"], to_yaml(cfg))
    write_text(run_dir / RUN_FILES["config_hash"], digest + "\n")
    return digest


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw
