"""The workflow's plan (`unilearn.plan`), without Snakemake: how each stage starts here and under
Slurm, what each job reads, and the errors that name the config key a target needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from unilearn.plan import Plan, PlanError
from unilearn.plan.commands import line
from unilearn.status import expected_hash

CONFIGS = Path(__file__).parents[1] / "configs"
PY = "/env/bin/python"


def _plan(*overrides: str, launcher=None, configs=("demo.yaml",)) -> Plan:
    config = {"configs": [str(CONFIGS / c) for c in configs], "overrides": list(overrides),
              "launcher": launcher, "submitit_cluster": "slurm", "runs": "runs",
              "results": "results"}  # fmt: skip
    return Plan.from_workflow_config(config, python=PY)


@pytest.fixture(scope="module")
def demo() -> Plan:
    return _plan()


def test_stages_start_here_with_the_local_launcher(demo):
    c = demo.commands
    assert c.gpu("finetune") == [PY, "-m", "unilearn", "finetune", "--launcher", "local"]
    assert c.cpu("doctor") == [PY, "-m", "unilearn", "doctor"]
    assert c.cpu_workers(2) == ["--workers", "2"] and c.cpu_threads(2) == 2
    assert c.gpu_threads == 1 and c.cpu_local_heavy == 1  # the demo's runtime.threads: 1


def test_under_submitit_stages_go_through_the_thin_submitter():
    c = _plan(launcher="submitit").commands
    configs = f"--config {CONFIGS / 'demo.yaml'}"
    assert " ".join(c.gpu("pretrain")) == (
        f"{PY} -m unilearn.launch pretrain {configs} --submitit-cluster slurm --"
    )
    assert [w for w in c.cpu("manifest") if w] == [
        *c.gpu("manifest")[:-1], "--slurm-folder", "runs/demo/logs/slurm/manifest", "--"
    ]  # fmt: skip
    # a submitted stage only waits here: one thread, no worker count, no local_heavy slot
    assert (c.gpu_threads, c.cpu_threads(2), c.cpu_workers(2), c.cpu_local_heavy) == (1, 1, [], 0)


def test_a_misspelt_key_fails_when_the_plan_is_made():
    with pytest.raises(PlanError, match="invalid unilearn config: .*finetune.epochz"):
        _plan("finetune.epochz=2")


def test_published_weights_replace_a_modes_pretraining(tmp_path):
    weights = tmp_path / "published.pt"
    weights.write_bytes(b"x")
    plan = _plan(f"pretrain.init.image+video={weights}")
    assert plan.pretrain_checkpoint("image+video") == str(weights)
    assert plan.pretrain_checkpoint("video") == "runs/demo/pretrain/video/checkpoint.pt"
    with pytest.raises(PlanError, match="pretrain.init.video: .*nope.pt does not exist"):
        _plan(f"pretrain.init.video={tmp_path / 'nope.pt'}")


def test_a_joint_fine_tuning_reads_its_dfer_sfer_and_test_stores(demo):
    inputs = demo.finetune_inputs("unilearn@n_experts=4", "ferv39k")
    assert inputs == {
        "init": "runs/demo/pretrain/image+video/checkpoint.pt",
        "tables": ["data/store/affectnet.parquet", "data/store/ferv39k.parquet"],
    }
    assert demo.test_args("unilearn", "ferv39k") == ["--test", "ferv39k", "--test", "affectnet7"]
    assert demo.test_args("videomae", "dfew") == ["--test", "dfew"]
    assert demo.fold_flag(3) == ["--fold", "3"] and demo.fold_flag(None) == []
    assert demo.run_override_args("unilearn@n_experts=4") == ["model.moae.n_experts=4"]
    with pytest.raises(PlanError, match="no experiment 'unilern' in the config"):
        demo.finetune_inputs("unilern", "ferv39k")


class _Wildcards(dict):
    __getattr__ = dict.__getitem__


def test_a_jobs_params_are_one_canonical_text_of_its_words_the_text_workflows_recorded(demo):
    # Snakemake re-runs a job whose params' text changed: each is its words joined by `line`, so
    # the spacing of a command in the code never re-runs a job, and the text is the one earlier
    # versions recorded, so a workflow run before keeps its stores and fine-tunings
    wc = _Wildcards(run="unilearn@n_experts=4", train="dfew", fold="-fold3")
    params = {key: param(wc) for key, param in demo.finetune_params().items()}
    assert params["fold"] == "--fold 3"  # the target's fold, read from {fold} once
    assert params["out"] == "runs/demo/finetune/unilearn@n_experts=4/dfew-fold3"
    assert params["run_overrides"] == "model.moae.n_experts=4"
    assert params["tests"] == "--test dfew"
    assert params["config_hash"] == demo.finetune_hash("unilearn@n_experts=4", "dfew")
    single = demo.finetune_params()["fold"](_Wildcards(run="unilearn", train="ferv39k"))
    assert (
        single == ""
        and line(demo.preprocess_settings("dfew")) == "--short-side 40 --framing default"
    )
    paper = _plan(configs=("paper.yaml",))  # VoxCeleb2: every frame as H.264, the flag added
    assert line(paper.preprocess_settings("voxceleb2")) == (
        "--short-side 176 --framing authors_region --codec h264"
    )
    assert line(paper.preprocess_settings("dfew")) == "--short-side 176 --framing default"
    strided = _plan("data.store.codec.voxceleb2=jpeg", "data.store.frame_stride={voxceleb2: 4}",
                    configs=("paper.yaml",))  # fmt: skip
    assert line(strided.preprocess_settings("voxceleb2")) == (
        "--short-side 176 --framing authors_region --frame-stride 4"
    )
    submitted = _plan(launcher="submitit").preprocess_stage("dfew")
    assert line(submitted).endswith(  # the text this prefix has always had
        "--submitit-cluster slurm  --slurm-folder runs/demo/logs/slurm/preprocess -- "
    )


def test_the_fine_tuning_hash_is_the_one_status_expects_and_is_worked_out_once(demo):
    first = demo.finetune_hash("unilearn@n_experts=2", "dfew")
    assert first == expected_hash(demo.cfg, "finetune", "unilearn@n_experts=2", "dfew-fold2")
    assert first != demo.finetune_hash("unilearn", "dfew")
    assert demo.finetune_hash("unilearn@n_experts=2", "dfew") is first  # cached


def test_real_data_without_a_root_names_the_missing_key():
    plan = _plan(configs=("paper.yaml",))
    with pytest.raises(PlanError, match=r"data\.roots\.dfew: not set, .* needs DFEW"):
        plan.native_root("dfew")
    assert plan.doctor_inputs() == [] and plan.manifest_inputs("dfew") == ["data/doctor/dfew.md"]


def test_preprocess_shards_become_parts_and_a_merge_that_runs_here():
    plan = _plan("data.preprocess_shards={voxceleb2: 2, default: 1}", launcher="submitit")
    assert plan.shard_parts("voxceleb2") == [
        "data/store/voxceleb2/parts/shard-0001-of-0002.done.json",
        "data/store/voxceleb2/parts/shard-0002-of-0002.done.json",
    ]
    assert plan.preprocess_work("voxceleb2", 1) == ["--merge", "2"]
    assert plan.preprocess_stage("voxceleb2") == [PY, "-m", "unilearn", "preprocess"]
    assert plan.shard_parts("dfew") == [] and "unilearn.launch" in plan.preprocess_stage("dfew")


def test_a_table_needs_its_metrics_last_and_best_and_its_manifests(demo):
    inputs = demo.report_inputs("table4")
    assert "runs/demo/metrics/unilearn/ferv39k/affectnet7.best.json" in map(str, inputs["metrics"])
    assert inputs["sidecars"] == []
    # the paired comparisons read both rows' predictions, last and best epoch
    predictions = set(map(str, inputs["predictions"]))
    assert "runs/demo/finetune/sfer_only/affectnet7/pred-affectnet7.best.parquet" in predictions
    assert "runs/demo/finetune/unilearn/ferv39k/pred-affectnet7.parquet" in predictions
    assert inputs["manifests"] == [
        "data/manifests/affectnet.parquet",
        "data/manifests/ferv39k.parquet",
    ]
    figure = demo.report_inputs("figure4b")
    assert all(str(m).endswith(".json") and ".best." not in str(m) for m in figure["metrics"])
    assert any(str(s).endswith("pred-affectnet7.centres.parquet") for s in figure["sidecars"])


def test_a_validation_split_adds_val_outputs_to_the_same_jobs_and_off_requires_none(demo):
    # demo.yaml holds out a validation split: the fine-tuning job itself writes pred-*.val
    metrics = list(map(str, demo.report_inputs("table4")["metrics"]))
    assert "runs/demo/metrics/unilearn/ferv39k/affectnet7.val.json" in metrics
    outputs = demo.finetune_outputs("R", "T", ["ferv39k", "affectnet7"])
    assert outputs["ferv39k_val"] == "runs/demo/finetune/R/T/pred-ferv39k.val.parquet"
    assert outputs["affectnet7_val_metrics_json"] == (
        "runs/demo/finetune/R/T/pred-affectnet7.val.metrics.json"
    )
    inputs = type("Inputs", (), {"val": ["a b.parquet"]})()
    out = type("Outputs", (), {"val": "m.val.json"})()
    args = " ".join(demo.aggregate_val_args("unilearn", "dfew", inputs, out))
    assert args.startswith("&& ") and "'a b.parquet' --out m.val.json --expect-folds 5" in args
    off = _plan("finetune.selection.validation=null")
    assert not any(".val" in k or ".val." in v for k, v in
                   off.finetune_outputs("R", "T", ["ferv39k"]).items())  # fmt: skip
    assert not any(".val." in str(m) for m in off.report_inputs("table4")["metrics"])
    assert off.aggregate_val_args("unilearn", "dfew", inputs, out) == []


def test_a_target_is_named_and_parsed_by_the_layout_alone():
    import re

    from unilearn import layout
    from unilearn.catalogue import FINETUNE_DATASETS, FOLDS

    for train in FINETUNE_DATASETS:
        for target in layout.targets(train):  # dfew-fold1..5, ferv39k, affectnet7
            dataset, fold = layout.parse_target(target)
            assert dataset == train and layout.target_name(dataset, fold) == target
            suffix = target.removeprefix(train)  # what the rules' {fold} wildcard matches
            assert re.fullmatch(layout.FOLD_SUFFIX, suffix)
            assert layout.parse_fold(suffix) == fold and (fold is None) == (not FOLDS[train])
    assert not re.fullmatch(layout.FOLD_SUFFIX, "-fold9")
    files = layout.run_files("runs/demo/finetune/unilearn/dfew-fold1")
    assert (files.resume.name, files.config_hash.name, files.checkpoint("best").name) == (
        "last.pt",
        "config.sha256",
        "checkpoint-best.pt",
    )
