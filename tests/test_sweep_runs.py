"""A run's name maps to typed overrides and back (`unilearn.report.runs`): the value a sweep point
sets is the one in the config's `sweeps`, the name on disk keeps its form, and the command line
the engine is given reads back as the same config."""

from __future__ import annotations

from pathlib import Path

import pytest

from unilearn.config import config_hash, load_config, parse_override
from unilearn.report import runs

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def demo():
    return load_config(CONFIGS / "demo.yaml")


def test_a_run_name_gives_the_typed_value_of_its_sweep_point(demo):
    assert runs.run_overrides(demo, "unilearn@n_experts=4") == [("model.moae.n_experts", 4)]
    (override,) = runs.run_overrides(demo, "unilearn@sfer_proportion=0.25")
    assert override == ("finetune.sfer_proportion", 0.25) and isinstance(override[1], float)
    assert runs.run_overrides(demo, "unilearn") == []
    with pytest.raises(ValueError, match="not a point of sweeps.n_experts"):
        runs.run_overrides(demo, "unilearn@n_experts=99")
    with pytest.raises(ValueError, match="unknown sweep 'top_kk'"):
        runs.run_overrides(demo, "unilearn@top_kk=2")


def test_a_list_valued_point_keeps_its_list_and_its_dashed_name(demo):
    cfg = demo.with_overrides([("sweeps", {"moae_position": [[0, 1, 3], "early"]})])
    assert runs.run_overrides(cfg, "unilearn@moae_position=0-1-3") == [
        ("model.moae.position", [0, 1, 3])
    ]
    assert [r.name for r in runs.sweep_runs(cfg, "moae_position")][0] == (
        "unilearn@moae_position=0-1-3"
    )


def test_sweep_runs_name_each_point_and_map_back_to_its_override(demo):
    for sweep in demo.sweeps:
        for run, point in zip(runs.sweep_runs(demo, sweep), runs.sweep_points(demo, sweep)):
            if run.sweep is None:  # the config's own value: the experiment's run
                assert runs.point_is_experiment(demo, "unilearn", point)
            else:
                assert runs.run_overrides(demo, run.name) == [point]


def test_the_point_at_the_configs_own_value_is_the_experiments_run(demo):
    names = [r.name for r in runs.sweep_runs(demo, "sfer_proportion")]
    assert names == [
        "unilearn" if v == demo.finetune.sfer_proportion else f"unilearn@sfer_proportion={v}"
        for v in demo.sweeps["sfer_proportion"]
    ]
    assert demo.finetune.sfer_proportion in demo.sweeps["sfer_proportion"]  # trained once


def test_run_names_on_disk_keep_their_form():
    run = runs.parse_run("unilearn@sfer_proportion=0.25")
    assert (run.experiment, run.sweep, run.value, run.name) == (
        "unilearn", "sfer_proportion", "0.25", "unilearn@sfer_proportion=0.25"
    )  # fmt: skip
    with pytest.raises(ValueError, match="expected EXPERIMENT or EXPERIMENT@SWEEP=VALUE"):
        runs.parse_run("uni/learn")


@pytest.mark.parametrize("config", ["demo.yaml", "paper.yaml"])
def test_the_engines_command_line_reads_back_as_the_typed_point(config):
    cfg = load_config(CONFIGS / config)
    for sweep in cfg.sweeps:
        for run in runs.sweep_runs(cfg, sweep):
            typed = runs.run_overrides(cfg, run)
            text = [runs.override_arg(o) for o in typed]
            assert [parse_override(t) for t in text] == typed
            # the hash the workflow tracks is the one the engine records from its command line
            by_text = load_config(CONFIGS / config, text)
            dataset = "ferv39k"
            resolved = by_text.resolve_experiment("unilearn", dataset)
            assert runs.finetune_hash(cfg, run, dataset) == config_hash(
                resolved.config, "finetune", resolved
            )
