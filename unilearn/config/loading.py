"""Config files in and out: `load_config` (YAML files deep-merged in order, overrides, validation
with every mistake reported at once, then the experiments and sweep points checked once), and the
resolved `config.yaml` / `config.sha256` a run directory records.

Files are deep-merged in the order given (later wins), so machine-specific dataset roots live in a
separate file: `--config configs/paper.yaml --config configs/local.yaml`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unilearn.config.errors import ConfigError, error_lines, validated
from unilearn.config.hashing import config_hash
from unilearn.config.overrides import apply_overrides, deep_merge, parse_override, unknown_keys
from unilearn.config.schema import Config


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
    write_text(run_dir / "config.yaml", to_yaml(cfg))
    write_text(run_dir / "config.sha256", digest + "\n")
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
