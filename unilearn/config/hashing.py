"""The config hash: sha256 of the canonical resolved config, per stage without the sections that
stage does not read, so that e.g. changing fine-tuning epochs does not invalidate a pre-training
run. Run directories record it (`config.sha256`); resuming checks it."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unilearn.config.resolve import ResolvedExperiment
    from unilearn.config.schema import Config

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
