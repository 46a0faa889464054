# Data: synthetic datasets (demo) or the user's native trees, checked by `unilearn doctor`
# (the demo's synthetic trees too: they pass), read into Parquet manifests, then preprocessed
# into the clip store.

# Data first: every dataset's store before any training, so the last datasets' fine-tunings do
# not start alone at the end of the run (the demo's FERV39K store came last: 90 s on one core).
DATA_PRIORITY = 50


rule synth:
    output:
        PLAN.synth_summary(),
    log:
        PLAN.log("synth"),
    params:
        preset=CFG.data.synthetic,
    resources:
        local_heavy=1,
    shell:
        "{UNILEARN} synth --out {SYNTH} --preset {params.preset} --no-progress > {log} 2>&1"


# Exit status 1 = this copy of the dataset would not reproduce the paper: the rule fails and the
# DAG stops with the doctor's verdict in the log, unless data.doctor.override is set.
rule doctor:
    input:
        PLAN.doctor_inputs(),
    output:
        PLAN.doctor_report("{dataset}"),
    log:
        PLAN.log("doctor", "{dataset}"),
    params:
        root=lambda wc: PLAN.native_root(wc.dataset),
        override=int(CFG.data.doctor.override),
        workers=lambda wc, threads: line(COMMANDS.cpu_workers(threads)),
    threads: 1
    priority: DATA_PRIORITY
    resources:
        local_heavy=CPU_STAGE_LOCAL_HEAVY,
    shell:
        "{CPU_STAGE[doctor]} {wildcards.dataset} --root {params.root:q} --report {output} "
        "{params.workers} --no-progress > {log} 2>&1 || ( [ {params.override} = 1 ] && "
        "echo 'verdict overridden by data.doctor.override' >> {log} )"


rule manifest:
    input:
        lambda wc: PLAN.manifest_inputs(wc.dataset),
    output:
        PLAN.manifest("{dataset}"),
    log:
        PLAN.log("manifest", "{dataset}"),
    params:
        root=lambda wc: PLAN.native_root(wc.dataset),
        workers=lambda wc, threads: line(COMMANDS.cpu_workers(threads)),
    threads: COMMANDS.cpu_threads(2)
    priority: DATA_PRIORITY
    resources:
        local_heavy=CPU_STAGE_LOCAL_HEAVY,
    shell:
        "{CPU_STAGE[manifest]} {wildcards.dataset} --root {params.root:q} --out {MANIFESTS} "
        "{params.workers} --no-progress > {log} 2>&1"


# One part of a sharded dataset: its own job, side by side with the others; resumable (a re-run
# redoes only the parts whose marker is missing, each from its journals).
rule preprocess_shard:
    input:
        PLAN.manifest("{dataset}"),
    output:
        PLAN.shard_marker("{dataset}", "{shard}", "{shards}"),
    log:
        PLAN.log("preprocess", "{dataset}", "shard-{shard}-of-{shards}"),
    params:
        settings=lambda wc: line(PLAN.preprocess_settings(wc.dataset)),
        shard=lambda wc: f"{int(wc.shard)}/{int(wc.shards)}",
        workers=lambda wc, threads: line(COMMANDS.cpu_workers(threads)),
    wildcard_constraints:
        shard=r"\d{4}",
        shards=r"\d{4}",
    threads: COMMANDS.cpu_threads(2)
    priority: DATA_PRIORITY
    resources:
        local_heavy=CPU_STAGE_LOCAL_HEAVY,
    shell:
        "{CPU_STAGE[preprocess]} --manifest {input} --out {STORE} {params.settings} "
        "--shard {params.shard} {params.workers} --no-progress > {log} 2>&1"


# The store table: one run over every clip, or (data.preprocess_shards > 1) the merge of the
# finished parts, which does no clip work and runs here.
rule preprocess:
    input:
        manifest=PLAN.manifest("{dataset}"),
        parts=lambda wc: PLAN.shard_parts(wc.dataset),
    output:
        PLAN.store_table("{dataset}"),
    log:
        PLAN.log("preprocess", "{dataset}"),
    # Snakemake records a param (a change re-runs the job) unless its function takes `threads`:
    # the store's settings are recorded, and so is the start command here (what workflows run
    # before recorded); where it runs (a launcher edit) and its worker count are not.
    params:
        short_side=CFG.data.store.short_side,
        settings=lambda wc: line(PLAN.preprocess_settings(wc.dataset)),
        here=line(COMMANDS.here("preprocess")),
        stage=lambda wc, threads: line(PLAN.preprocess_stage(wc.dataset)),
        work=lambda wc, threads: line(PLAN.preprocess_work(wc.dataset, threads)),
    threads: lambda wc: PLAN.preprocess_threads(wc.dataset)
    priority: DATA_PRIORITY
    resources:
        local_heavy=lambda wc: PLAN.preprocess_local_heavy(wc.dataset),
    shell:
        "{params.stage} --manifest {input.manifest} --out {STORE} {params.settings} "
        "{params.work} > {log} 2>&1"
