# Dual-modal MAE pre-training, once per pre-training mode an experiment needs (paper Table 2).
# A GPU stage: with `launcher: submitit` (config or the slurm profile) it runs as a Slurm job.
# A mode with published weights (`pretrain.init`) never runs: its fine-tunings start from the
# file (`PLAN.pretrain_checkpoint`), checked at parse time.


rule pretrain:
    input:
        lambda wc: PLAN.pretrain_stores(wc.mode),
    output:
        PLAN.pretrain_checkpoint("{mode}"),
    log:
        PLAN.pretrain_log("{mode}"),
    params:
        out=lambda wc: PLAN.pretrain_dir(wc.mode),
        config_hash=CONFIG_HASH["pretrain"],
    threads: GPU_STAGE_THREADS
    priority: 40  # every fine-tuning waits for one
    shell:
        "{GPU_STAGE[pretrain]} {CONFIG_ARGS} --mode {wildcards.mode:q} --store {STORE} "
        "--out {params.out:q} --no-progress --restart-if-config-changed {OVERRIDE_ARGS} "
        "> {log} 2>&1"


# `seeds_pretrain: true`: a seed other than the config's `seed` pre-trains on its own, into
# pretrain/<mode>@seed=N (its fine-tunings start there: `PLAN.finetune_inputs`).
rule pretrain_seed:
    input:
        lambda wc: PLAN.pretrain_stores(wc.mode),
    output:
        PLAN.pretrain_checkpoint("{mode}", "{seed}"),
    log:
        PLAN.pretrain_log("{mode}", "{seed}"),
    params:
        out=lambda wc: PLAN.pretrain_dir(wc.mode, wc.seed),
        config_hash=lambda wc: PLAN.pretrain_seed_hash(wc.seed),
    threads: GPU_STAGE_THREADS
    priority: 40
    shell:
        "{GPU_STAGE[pretrain]} {CONFIG_ARGS} --mode {wildcards.mode:q} --store {STORE} "
        "--out {params.out:q} --no-progress --restart-if-config-changed {OVERRIDE_ARGS} "
        "seed={wildcards.seed} > {log:q} 2>&1"
