# Joint fine-tuning per run (experiment, or sweep point) x dataset x fold, its evaluation, and the
# pooling of the folds' predictions into one UAR/WAR (paper SPEC 1.5). GPU stages: finetune and
# evaluate run as Slurm jobs with `launcher: submitit`.


def finetune_inputs(wildcards):
    run = layout.parse_run(wildcards.run)
    if run.experiment not in CFG.experiments:
        raise WorkflowError(
            f"run {wildcards.run}: no experiment {run.experiment!r} in the config "
            f"(experiments: {sorted(CFG.experiments)})"
        )
    experiment = CFG.experiments[run.experiment]
    dataset, _ = layout.parse_target(wildcards.target)
    tables = []
    if "dfer" in experiment.tasks and dataset != layout.SFER_TEST:
        tables.append(store_table(layout.STORE_TABLE[dataset]))
    if "sfer" in experiment.tasks:
        tables.append(store_table(layout.STORE_TABLE[CFG.data.sfer_dataset]))
    return {"init": pretrain_checkpoint(experiment.pretrain), "tables": tables}


def fold_flag(target, test=None):
    """`--fold K` when the run is a fold of a cross-validated dataset (and tested on it)."""
    dataset, fold = layout.parse_target(target)
    if fold is None or (test is not None and test != dataset):
        return ""
    return f"--fold {fold}"


def run_override_args(run):
    return " ".join(shlex.quote(o) for o in layout.run_overrides(CFG, run))


def run_config_hash(run, target):
    """The fine-tuning config hash the engine records for this run (its config.sha256)."""
    cfg = CFG.with_overrides(layout.run_overrides(CFG, run))
    resolved = cfg.resolve_experiment(layout.parse_run(run).experiment, layout.parse_target(target)[0])
    return config_hash(resolved.config, "finetune")


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        f"{RUNS}/finetune/{{run}}/{{target}}/checkpoint.pt",
    log:
        f"{LOGS}/finetune/{{run}}/{{target}}.log",
    params:
        experiment=lambda wc: layout.parse_run(wc.run).experiment,
        dataset=lambda wc: layout.parse_target(wc.target)[0],
        fold=lambda wc: fold_flag(wc.target),
        out=lambda wc: layout.finetune_dir(RUNS, wc.run, wc.target),
        run_overrides=lambda wc: run_override_args(wc.run),
        config_hash=lambda wc: run_config_hash(wc.run, wc.target),
        fresh=lambda wc: fresh_if_config_changed(
            layout.finetune_dir(RUNS, wc.run, wc.target), run_config_hash(wc.run, wc.target)
        ),
    threads: GPU_STAGE_THREADS
    shell:
        "( {params.fresh} ) > {log:q} 2>&1; "
        "{GPU_STAGE[finetune]} {CONFIG_ARGS} --experiment {params.experiment} --run {wildcards.run:q} "
        "--dataset {params.dataset} {params.fold} --store {STORE} --init {input.init:q} "
        "--out {params.out:q} --no-progress {OVERRIDE_ARGS} {params.run_overrides} "
        ">> {log:q} 2>&1"


rule evaluate:
    input:
        checkpoint=f"{RUNS}/finetune/{{run}}/{{target}}/checkpoint.pt",
        table=lambda wc: store_table(layout.STORE_TABLE[wc.test]),
    output:
        predictions=f"{RUNS}/finetune/{{run}}/{{target}}/pred-{{test}}.parquet",
        metrics=f"{RUNS}/finetune/{{run}}/{{target}}/pred-{{test}}.metrics.json",
        expert_usage=f"{RUNS}/finetune/{{run}}/{{target}}/pred-{{test}}.expert_usage.json",
        centres=f"{RUNS}/finetune/{{run}}/{{target}}/pred-{{test}}.centres.parquet",
    log:
        f"{LOGS}/evaluate/{{run}}/{{target}}-{{test}}.log",
    params:
        fold=lambda wc: fold_flag(wc.target, wc.test),
        config_hash=CONFIG_HASH["evaluate"],
    threads: GPU_STAGE_THREADS
    shell:
        "{GPU_STAGE[evaluate]} --checkpoint {input.checkpoint:q} --store {STORE} "
        "--dataset {wildcards.test} {params.fold} --out {output.predictions:q} {CONFIG_ARGS} "
        "--no-progress {OVERRIDE_ARGS} > {log:q} 2>&1"


rule aggregate:
    input:
        lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test),
    output:
        f"{RUNS}/metrics/{{run}}/{{train}}/{{test}}.json",
    log:
        f"{LOGS}/aggregate/{{run}}/{{train}}-{{test}}.log",
    params:
        expect=lambda wc: (
            f"--expect-folds {len(layout.FOLDED[wc.train])}" if wc.train in layout.FOLDED else ""
        ),
    shell:
        "{UNILEARN} aggregate {input:q} --out {output:q} {params.expect} --run {wildcards.run:q} "
        "{CONFIG_ARGS} > {log:q} 2>&1"
