# Joint fine-tuning per run (experiment, or sweep point) x dataset x fold, with its test inside
# the job (every finetune.eval_every epochs, then the predictions of the last and the best epoch's
# weights on every test set of the run), and the pooling of the folds' predictions into one
# UAR/WAR. A GPU stage: finetune runs as a Slurm job with `launcher: submitit`.


def finetune_inputs(wildcards):
    run = layout.parse_run(wildcards.run)
    if run.experiment not in CFG.experiments:
        raise WorkflowError(
            f"run {wildcards.run}: no experiment {run.experiment!r} in the config "
            f"(experiments: {sorted(CFG.experiments)})"
        )
    experiment = CFG.experiments[run.experiment]
    dataset = wildcards.train
    tables = []
    if "dfer" in experiment.tasks and dataset != layout.SFER_TEST:
        tables.append(store_table(DATASETS[dataset].store_table))
    if "sfer" in experiment.tasks:
        tables.append(store_table(DATASETS[CFG.data.sfer_dataset].store_table))
    for test in layout.tests_of(dataset, experiment.tasks):
        tables.append(store_table(DATASETS[test].store_table))
    return {"init": pretrain_checkpoint(experiment.pretrain), "tables": sorted(set(tables))}


def finetune_outputs(run_dir, tests):
    """checkpoint.pt and, for each test set and the last and best weights, the predictions with
    their sidecars (what aggregate, tables and figures read)."""
    out = {"checkpoint": f"{run_dir}/checkpoint.pt"}
    for test in tests:
        for weights in layout.WEIGHTS:
            name = layout.prediction_name(test, weights)
            out[f"{test}_{weights}"] = f"{run_dir}/{name}"
            for suffix in layout.PREDICTION_SIDECARS:
                sidecar = name.removesuffix(".parquet") + suffix
                out[f"{test}_{weights}{suffix.replace('.', '_')}"] = f"{run_dir}/{sidecar}"
    return out


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


FINETUNE_PARAMS = dict(
    experiment=lambda wc: layout.parse_run(wc.run).experiment,
    fold=lambda wc: fold_flag(wc.train + wc.get("fold", "")),
    out=lambda wc: layout.finetune_dir(RUNS, wc.run, wc.train + wc.get("fold", "")),
    tests=lambda wc: " ".join(
        f"--test {t}"
        for t in layout.tests_of(wc.train, CFG.experiments[layout.parse_run(wc.run).experiment].tasks)
    ),
    run_overrides=lambda wc: run_override_args(wc.run),
    config_hash=lambda wc: run_config_hash(wc.run, wc.train + wc.get("fold", "")),
    fresh=lambda wc: fresh_if_config_changed(
        layout.finetune_dir(RUNS, wc.run, wc.train + wc.get("fold", "")),
        run_config_hash(wc.run, wc.train + wc.get("fold", "")),
    ),
)
FINETUNE_SHELL = (
    "( {params.fresh} ) > {log:q} 2>&1; "
    "{GPU_STAGE[finetune]} {CONFIG_ARGS} --experiment {params.experiment} --run {wildcards.run:q} "
    "--dataset {wildcards.train} {params.fold} --store {STORE} --init {input.init:q} "
    "--out {params.out:q} {params.tests} --no-progress {OVERRIDE_ARGS} {params.run_overrides} "
    ">> {log:q} 2>&1"
)
# Experiments with both heads: fine-tuned on a single-split DFER dataset, they are also tested on
# AffectNet-7 (Table 4, Figure 4), which `finetune_joint` adds to the job's outputs.
JOINT_RUNS = _alternatives(
    name for name, e in CFG.experiments.items() if {"sfer", "dfer"} <= set(e.tasks)
)
SINGLE_SPLIT_DFER = _alternatives(
    d for d in TESTSETS if not FOLDS[d] and d != layout.SFER_TEST
)


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        **finetune_outputs(f"{RUNS}/finetune/{{run}}/{{train}}{{fold}}", ["{train}"]),
    log:
        f"{LOGS}/finetune/{{run}}/{{train}}{{fold}}.log",
    wildcard_constraints:
        fold=r"(-fold[1-5])?",
    params:
        **FINETUNE_PARAMS,
    threads: GPU_STAGE_THREADS
    shell:
        FINETUNE_SHELL


rule finetune_joint:
    input:
        unpack(finetune_inputs),
    output:
        **finetune_outputs(f"{RUNS}/finetune/{{run}}/{{train}}", ["{train}", layout.SFER_TEST]),
    log:
        f"{LOGS}/finetune/{{run}}/{{train}}.log",
    wildcard_constraints:
        run=rf"({JOINT_RUNS})(@[A-Za-z0-9_.]+=[^/]+)?",
        train=SINGLE_SPLIT_DFER,
    params:
        **FINETUNE_PARAMS,
    threads: GPU_STAGE_THREADS
    shell:
        FINETUNE_SHELL


ruleorder: finetune_joint > finetune


rule aggregate:
    input:
        last=lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test, "last"),
        best=lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test, "best"),
    output:
        last=f"{RUNS}/metrics/{{run}}/{{train}}/{{test}}.json",
        best=f"{RUNS}/metrics/{{run}}/{{train}}/{{test}}.best.json",
    log:
        f"{LOGS}/aggregate/{{run}}/{{train}}-{{test}}.log",
    params:
        expect=lambda wc: (
            f"--expect-folds {len(FOLDS[wc.train])}" if FOLDS[wc.train] else ""
        ),
    shell:
        "( {UNILEARN} aggregate {input.last:q} --out {output.last:q} {params.expect} "
        "--run {wildcards.run:q} {CONFIG_ARGS} && "
        "{UNILEARN} aggregate {input.best:q} --out {output.best:q} {params.expect} "
        "--run {wildcards.run:q} {CONFIG_ARGS} ) > {log:q} 2>&1"
