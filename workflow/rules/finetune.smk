# Joint fine-tuning per run (experiment, or sweep point) x dataset x fold, with its test inside
# the job (every finetune.eval_every epochs, then the predictions of the last and the best epoch's
# weights on every test set of the run), and the pooling of the folds' predictions into one
# UAR/WAR. A GPU stage: finetune runs as a Slurm job with `launcher: submitit`.
# A target `dfew-fold3` is the wildcards {train}{fold} (`layout.FOLD_SUFFIX`).

FINETUNE_SHELL = (
    "{GPU_STAGE[finetune]} {CONFIG_ARGS} --experiment {params.experiment} --run {wildcards.run:q} "
    "--dataset {wildcards.train} {params.fold} --store {STORE} --init {input.init:q} "
    "--out {params.out:q} {params.tests} --no-progress --restart-if-config-changed "
    "{OVERRIDE_ARGS} {params.run_overrides} > {log:q} 2>&1"
)


rule finetune:
    input:
        unpack(lambda wc: PLAN.finetune_inputs(wc.run, wc.train)),
    output:
        **PLAN.finetune_outputs("{run}", "{train}{fold}", ["{train}"]),
    log:
        PLAN.finetune_log("{run}", "{train}{fold}"),
    params:
        **PLAN.finetune_params(),
    threads: GPU_STAGE_THREADS
    shell:
        FINETUNE_SHELL


# Experiments with both heads: fine-tuned on a single-split DFER dataset, they are also tested on
# AffectNet-7 (Table 4, Figure 4), which `finetune_joint` adds to the job's outputs.
rule finetune_joint:
    input:
        unpack(lambda wc: PLAN.finetune_inputs(wc.run, wc.train)),
    output:
        **PLAN.finetune_outputs("{run}", "{train}", ["{train}", layout.SFER_TEST]),
    log:
        PLAN.finetune_log("{run}", "{train}"),
    wildcard_constraints:
        run=PLAN.joint_runs,
        train=PLAN.single_split_dfer(),
    params:
        **PLAN.finetune_params(),
    threads: GPU_STAGE_THREADS
    shell:
        FINETUNE_SHELL


ruleorder: finetune_joint > finetune


# The pools of every reported weights of the run (`layout.weights_of`: last, best, and val when
# the config holds out a validation split), in one job.
AGGREGATE_VAL = "val" in layout.weights_of(CFG)


rule aggregate:
    input:
        last=lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test, "last"),
        best=lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test, "best"),
        val=lambda wc: layout.predictions_for(RUNS, wc.run, wc.train, wc.test, "val") if AGGREGATE_VAL else [],
    output:
        **PLAN.aggregate_outputs(),
    log:
        PLAN.log("aggregate", "{run}", "{train}-{test}"),
    params:
        expect=lambda wc: line(PLAN.expect_folds(wc.train)),
        bootstrap=CFG.report.bootstrap.model_dump_json(),  # the intervals it writes
        val=lambda wc, input, output: line(
            PLAN.aggregate_val_args(wc.run, wc.train, input, output)
        ),
    shell:
        "( {UNILEARN} aggregate {input.last:q} --out {output.last:q} {params.expect} "
        "--run {wildcards.run:q} {CONFIG_ARGS} && "
        "{UNILEARN} aggregate {input.best:q} --out {output.best:q} {params.expect} "
        "--run {wildcards.run:q} {CONFIG_ARGS} {params.val} ) > {log:q} 2>&1"
