"""The run config: every shipped config validates, every error names its dotted key, overrides and
merged files behave, the hash is canonical, and every experiment of the paper resolves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unilearn.config import (
    PAPER_EXPERIMENTS,
    ConfigError,
    config_hash,
    load_config,
    parse_override,
    save_resolved,
)
from unilearn.report.runs import sweep_points

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def demo():
    return load_config(CONFIGS / "demo.yaml")


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.model.moae.top_k <= cfg.model.moae.n_experts
    for sweep in cfg.sweeps:
        assert sweep_points(cfg, sweep)


def test_paper_config_is_the_paper_setting():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert (cfg.model.size, cfg.model.num_frames, cfg.model.input_size) == ("base", 16, 160)
    assert (cfg.pretrain.mask_ratio_video, cfg.pretrain.mask_ratio_image) == (0.95, 0.90)
    assert cfg.pretrain.epochs == cfg.finetune.epochs == 100
    f = cfg.finetune
    assert (f.layer_decay, f.label_smoothing, f.mixup, f.cutmix) == (0.75, 0.1, 0.8, 1.0)
    # the authors' fine-tuning: lr 1e-5 x batch / 8, 16 videos and 32 images per GPU, erasing 0.25
    assert (f.blr, f.lr_batch_base, f.batch_size, f.sfer_batch_factor) == (1e-5, 8, 16, 2)
    assert (f.warmup_epochs, f.randaug, f.random_erasing) == (5, "rand-m7-n4-mstd0.5-inc1", 0.25)
    assert (f.sfer_sampling, f.sfer_augment) == ("balanced", "resize_crop")
    assert cfg.model.drop_path == 0.0 and cfg.evaluate.n_clips == 2
    p = cfg.pretrain
    assert (p.blr, p.lr_batch_base, p.batch_size, p.min_lr) == (1.6e-3, 512, 192, 0.0)
    assert (p.augment, p.repeated_views, p.video_repeat, p.crop_on_device) == (
        "resized",
        4,
        0.25,
        True,
    )
    assert (cfg.model.moae.n_experts, cfg.model.moae.top_k, cfg.finetune.sfer_proportion) == (
        8,
        2,
        0.5,
    )


def test_local_file_deep_merges_dataset_roots(tmp_path):
    local = tmp_path / "local.yaml"
    local.write_text("data:\n  roots: {dfew: /d/DFEW}\n  workdir: $HOME/work\n")
    cfg = load_config([CONFIGS / "paper.yaml", local])
    assert cfg.data.roots.dfew == "/d/DFEW" and cfg.data.roots.mafw is None
    assert "$HOME" not in cfg.data.workdir
    assert cfg.model.size == "base"  # untouched keys keep the first file's values
    assert load_config([CONFIGS / "paper.yaml", CONFIGS / "local.example.yaml"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.moae.top_k=9", "model.moae.top_k"),  # top_k > n_experts
        ("model.moae.n_expert=3", "model.moae.n_expert"),  # misspelt
        ("pretrain.mask_ratio_video=1.0", "pretrain.mask_ratio_video"),
        ("pretrain.mask_ratio_image=0", "pretrain.mask_ratio_image"),
        ("finetune.sfer_proportion=0", "finetune.sfer_proportion"),
        ("finetune.sfer_proportion=1.5", "finetune.sfer_proportion"),
        ("finetune.epochs=ten", "finetune.epochs"),  # wrong type
        ("experiments.unilearn.arch=vit_huge", "experiments.unilearn.arch"),
        ("experiments.unilearn.pretrain=images", "experiments.unilearn.pretrain"),
        ("data.dfer_datasets=[dfew,dfew2]", "data.dfer_datasets.1"),
        ("data.sfer_dataset=affectnet8", "data.sfer_dataset"),
        ("model.moae.position=[0,99]", "model: moae.position"),
        (
            "experiments.x={arch: vit, pretrain: video, tasks: [dfer], overrides: {model.sizee: base}}",
            "model.sizee",
        ),
    ],
)
def test_config_errors_name_the_key(demo, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        demo.with_overrides([override])


def test_config_with_several_mistakes_reports_all_of_them(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  moae:\n    n_expert: 4\n  widht: 96\n"
        "finetune:\n  epochs: -1\n  batch_size: many\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    message = str(error.value)
    assert message.startswith("4 problems:")
    for part in ("model.moae.n_expert: unknown key", "model.widht: unknown key",
                 "finetune.epochs", "finetune.batch_size"):  # fmt: skip
        assert part in message, part


def test_experiments_and_sweep_points_are_checked_once_per_load(monkeypatch):
    from unilearn.config import Config

    calls = []
    check = Config.check_runs
    monkeypatch.setattr(Config, "check_runs", lambda self: calls.append(1) or check(self))
    cfg = load_config(CONFIGS / "paper.yaml", ["finetune.epochs=30"])
    assert calls == [1]
    # resolving an experiment and applying run overrides build Configs without re-checking
    cfg.resolve_experiment("moae_early", "dfew")
    cfg.with_overrides(["model.moae.n_experts=4"])
    assert calls == [1]


def test_a_bad_sweep_point_or_experiment_is_reported_at_load(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweeps:\n  n_experts: [4, 1]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: sweeps\.n_experts=1: .*top_k=2 must be <="):
        load_config(bad)
    # a mistake the overrides make is named with them; one the file makes, with the file alone
    with pytest.raises(ConfigError, match=r"with overrides \['model\.moae\.top_k=5'\]: sweeps"):
        load_config(CONFIGS / "paper.yaml", ["model.moae.top_k=5"])
    with pytest.raises(ConfigError, match=r"^\S*bad\.yaml: sweeps\.n_experts=1"):
        load_config(bad, ["finetune.epochs=30"])
    bad.write_text("experiments:\n  x: {arch: vit, pretrain: video, tasks: [dfer],\n"
                   "      overrides: {model.moae.top_k: 9}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"experiments\.x\.overrides: model\.moae\.top_k"):
        load_config(bad)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  moae:\n    n_expert: 4\n")
    with pytest.raises(
        ConfigError,
        match=r"bad\.yaml: model\.moae\.n_expert: unknown key \(did you mean 'n_experts'\?\)",
    ):
        load_config(bad)
    bad.write_text("finetune:\n  warmup_epochs: 9\n  epochs: 3\n")
    with pytest.raises(
        ConfigError, match=r"bad\.yaml.*finetune.*warmup_epochs=9.0 exceeds epochs=3"
    ):
        load_config(bad)


def test_overrides_parse_yaml_values(demo):
    assert parse_override("finetune.blr=1e-3") == ("finetune.blr", 1e-3)
    assert parse_override("model.moae.position=[0,2]") == ("model.moae.position", [0, 2])
    cfg = load_config(
        CONFIGS / "demo.yaml", ["model.moae.n_experts=2", "model.moae.position=[2,3]"]
    )
    assert cfg.model.moae.n_experts == 2 and cfg.model.moae.position == [2, 3]
    # a mapping value merges into its section instead of resetting it
    cfg = demo.with_overrides(["model.moae={top_k: 1}"])
    assert cfg.model.moae.top_k == 1 and cfg.model.moae.n_experts == demo.model.moae.n_experts
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        parse_override("finetune.blr")


def test_config_hash_is_canonical(demo, tmp_path):
    same = load_config(CONFIGS / "demo.yaml")
    assert config_hash(demo) == config_hash(same)
    assert config_hash(demo) != config_hash(demo.with_overrides(["finetune.blr=1e-2"]))
    # where it runs and logs does not change what it computes
    assert config_hash(demo) == config_hash(
        demo.with_overrides(["launcher.name=submitit", "wandb.mode=online"])
    )
    digest = save_resolved(demo, tmp_path)
    assert (tmp_path / "config.sha256").read_text().strip() == digest
    assert config_hash(load_config(tmp_path / "config.yaml")) == digest


@pytest.mark.parametrize("name", sorted(PAPER_EXPERIMENTS))
def test_every_paper_experiment_resolves(demo, name):
    exp = demo.experiments[name]
    dataset = "ferv39k" if "dfer" in exp.tasks else "affectnet7"
    r = demo.resolve_experiment(name, dataset)
    assert r.model_name.startswith(exp.arch + "_")
    assert set(r.labels) == set(r.tasks)
    has_moae = exp.arch in ("unilearn", "vit_moe")
    assert ("moae" in r.model_kwargs) == has_moae
    assert (r.model_kwargs["num_classes_sfer"] > 0) == ("sfer" in r.tasks)
    assert (r.model_kwargs["num_classes"] > 0) == ("dfer" in r.tasks)


def test_ablations_are_config_only(demo):
    assert demo.resolve_experiment("moae_early", "dfew").model_kwargs["moae"].position == "early"
    assert demo.resolve_experiment("videomae", "mafw").model_kwargs["num_classes"] == 11
    r = demo.resolve_experiment("videomae", "dfew")
    assert (r.arch, r.pretrain_mode, r.tasks) == ("vit", "video", ("dfer",))
    with pytest.raises(ConfigError, match="no DFER task"):
        demo.resolve_experiment("sfer_only", "dfew")
    with pytest.raises(ConfigError, match="unknown experiment 'unilern'.*did you mean 'unilearn'"):
        demo.resolve_experiment("unilern", "dfew")


def test_config_import_does_not_import_torch():
    # the Snakefile imports unilearn.config at parse time
    import subprocess

    code = "import sys, unilearn.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- `unilearn config`: the resolved stage and what the engine will use ---------------------------


def _resolved(*args, **kw):
    from unilearn.config_cli import resolve_stage

    return resolve_stage([CONFIGS / "paper.yaml"], *args, **kw)


def test_paper_unilearn_lr_is_the_authors_rule_at_their_world_size():
    from unilearn.engine.schedule import scaled_lr

    cfg = load_config(CONFIGS / "paper.yaml")
    for dataset in ("ferv39k", "dfew"):
        eff = _resolved("finetune", experiment="unilearn", dataset=dataset)["effective"]
        ft = cfg.finetune
        slurm = cfg.launcher.slurm_for("finetune")
        assert eff["world_size"] == slurm.nodes * slurm.tasks_per_node == 2
        assert eff["global_batch"] == ft.batch_size * 2 == 32
        assert eff["lr"] == pytest.approx(ft.blr * 32 / ft.lr_batch_base)
        assert eff["lr"] == pytest.approx(scaled_lr(1e-5, 32, batch_base=8))  # 4e-5
        assert eff["sfer_batch"] == 2 * ft.batch_size  # images per GPU
    pre = _resolved("pretrain", mode="image+video")["effective"]
    assert pre["global_batch"] == 2 * cfg.pretrain.batch_size  # views
    assert pre["lr"] == pytest.approx(cfg.pretrain.blr * pre["global_batch"] / 512)
    assert pre["min_lr"] == 0.0 and pre["clips_per_video_batch"] * 4 == cfg.pretrain.batch_size


def test_frame_stride_is_per_dataset_and_the_test_clips_use_the_same():
    ferv39k = _resolved("finetune", experiment="unilearn", dataset="ferv39k")
    dfew = _resolved("finetune", experiment="unilearn", dataset="dfew")
    per = load_config(CONFIGS / "paper.yaml").finetune.per_dataset
    assert ferv39k["effective"]["frame_stride"] == per["ferv39k"]["frame_stride"] == 1
    assert dfew["effective"]["frame_stride"] == dfew["finetune"]["frame_stride"] == 4
    for r in (ferv39k, dfew):
        assert r["effective"]["test_frame_stride"] == r["effective"]["frame_stride"]
    # a per-dataset value is overridden where it is set
    moved = _resolved(
        "finetune",
        experiment="unilearn",
        dataset="ferv39k",
        overrides=["finetune.per_dataset.ferv39k.frame_stride=2"],
    )
    assert moved["effective"]["frame_stride"] == 2


def test_per_dataset_keys_are_checked():
    with pytest.raises(ConfigError, match="frame_strde.*did you mean 'frame_stride'"):
        load_config(CONFIGS / "paper.yaml", ["finetune.per_dataset.ferv39k.frame_strde=1"])
    with pytest.raises(ConfigError, match="per_dataset.ferv39k"):
        load_config(CONFIGS / "paper.yaml", ["finetune.per_dataset.ferv39k.frame_stride=0"]
                    ).resolve_experiment("unilearn", "ferv39k")  # fmt: skip


def test_config_stage_prints_json_with_warmup_steps_from_the_store(tmp_path, capsys):
    import json

    from _stores import build_tiny_store

    from unilearn.cli import main
    from unilearn.engine.schedule import build_schedule, global_batch

    store = build_tiny_store(tmp_path)
    argv = [
        "config",
        "--stage",
        "finetune",
        "--config",
        str(CONFIGS / "demo.yaml"),
        "--experiment",
        "unilearn",
        "--dataset",
        "dfew",
        "--fold",
        "1",
        "--store",
        str(store),
        "finetune.warmup_epochs=1",
        "finetune.selection.validation=null",
    ]  # fmt: skip  (the tiny folds: too few clips)
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    eff, ft = out["effective"], load_config(CONFIGS / "demo.yaml").finetune
    assert out["finetune"]["warmup_epochs"] == 1 and eff["world_size"] == 1  # local launcher
    assert eff["warmup_steps"] == eff["steps_per_epoch"] > 0
    schedule = build_schedule(ft, global_batch(ft, 1), eff["steps_per_epoch"])
    assert eff["total_steps"] == schedule.total_steps and eff["lr"] == schedule.base_lr


def test_naming_published_weights_keeps_the_pretraining_hash(tmp_path):
    weights = tmp_path / "vit_base_voxceleb2+affectnet_100.pt"
    cfg = load_config(CONFIGS / "paper.yaml")
    named = cfg.with_overrides([f"pretrain.init.image+video={weights}"])
    assert named.pretrain.init == {"image+video": str(weights)}
    assert config_hash(named, "pretrain") == config_hash(cfg, "pretrain")
    assert config_hash(named, "finetune") == config_hash(cfg, "finetune")
    with pytest.raises(ConfigError, match="pretrain.init"):
        load_config(CONFIGS / "paper.yaml", ["pretrain.init.imag=/x.pt"])


def test_a_fine_tuning_hash_changes_with_its_experiment_only():
    """Editing one experiment's architecture, pre-training or tasks re-runs that experiment's
    fine-tunings (its hash moves) and leaves the others' hashes alone."""
    from unilearn.report.runs import finetune_hash

    cfg = load_config(CONFIGS / "demo.yaml")
    before = {e: finetune_hash(cfg, e, "dfew") for e in ("unilearn", "videomae")}
    assert before["unilearn"] != before["videomae"]
    edited = cfg.with_overrides([("experiments.unilearn.pretrain", "video")])
    assert finetune_hash(edited, "unilearn", "dfew") != before["unilearn"]
    assert finetune_hash(edited, "videomae", "dfew") == before["videomae"]
