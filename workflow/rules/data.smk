# Data: synthetic datasets (demo) or the user's native trees, checked by `unilearn doctor`
# (the demo's synthetic trees too: they pass), read into Parquet manifests, then preprocessed
# into the clip store.

DOCTOR_ON = CFG.data.doctor.enabled
# Data first: every dataset's store before any training, so the last datasets' fine-tunings do
# not start alone at the end of the run (the demo's FERV39K store came last: 90 s on one core).
DATA_PRIORITY = 50


def native_root(dataset):
    if CFG.data.synthetic:
        return f"{SYNTH}/{DATASETS[dataset].folder}"
    root = getattr(CFG.data.roots, dataset)
    if root is None:
        raise WorkflowError(
            f"data.roots.{dataset}: not set, but a requested target needs {DATASETS[dataset].folder}; "
            "set it in configs/local.yaml (see configs/local.example.yaml)"
        )
    return root


def manifest_inputs(wildcards):
    if DOCTOR_ON:  # the doctor's report (the doctor itself waits for synth)
        return [f"{DOCTOR}/{wildcards.dataset}.md"]
    return [f"{SYNTH}/synth.json"] if CFG.data.synthetic else []


rule synth:
    output:
        f"{SYNTH}/synth.json",
    log:
        f"{LOGS}/synth.log",
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
        [f"{SYNTH}/synth.json"] if CFG.data.synthetic else [],
    output:
        f"{DOCTOR}/{{dataset}}.md",
    log:
        f"{LOGS}/doctor/{{dataset}}.log",
    params:
        root=lambda wc: native_root(wc.dataset),
        override=int(CFG.data.doctor.override),
        workers=cpu_workers,
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
        manifest_inputs,
    output:
        f"{MANIFESTS}/{{dataset}}.parquet",
    log:
        f"{LOGS}/manifest/{{dataset}}.log",
    params:
        root=lambda wc: native_root(wc.dataset),
        workers=cpu_workers,
    threads: cpu_threads(2)
    priority: DATA_PRIORITY
    resources:
        local_heavy=CPU_STAGE_LOCAL_HEAVY,
    shell:
        "{CPU_STAGE[manifest]} {wildcards.dataset} --root {params.root:q} --out {MANIFESTS} "
        "{params.workers} --no-progress > {log} 2>&1"


def preprocess_shards(dataset):
    """How many parts (Slurm jobs) `preprocess` splits a dataset into: data.preprocess_shards."""
    shards = CFG.data.preprocess_shards
    return shards.get(dataset, shards.get("default", 1))


def preprocess_settings(dataset):
    """The store-settings flags of a dataset: short side, and the kept-frame stride if any."""
    stride = CFG.data.store.frame_stride.get(dataset, 1)
    return f"--short-side {CFG.data.store.short_side}" + (
        f" --frame-stride {stride}" if stride > 1 else ""
    )


def shard_parts(wildcards):
    n = preprocess_shards(wildcards.dataset)
    if n == 1:
        return []
    return [f"{STORE}/{wildcards.dataset}/parts/shard-{i:04d}-of-{n:04d}.done.json"
            for i in range(1, n + 1)]  # fmt: skip


# One part of a sharded dataset: its own job, side by side with the others; resumable (a re-run
# redoes only the parts whose marker is missing, each from its journals).
rule preprocess_shard:
    input:
        f"{MANIFESTS}/{{dataset}}.parquet",
    output:
        f"{STORE}/{{dataset}}/parts/shard-{{shard}}-of-{{shards}}.done.json",
    log:
        f"{LOGS}/preprocess/{{dataset}}/shard-{{shard}}-of-{{shards}}.log",
    params:
        settings=lambda wc: preprocess_settings(wc.dataset),
        shard=lambda wc: f"{int(wc.shard)}/{int(wc.shards)}",
        workers=cpu_workers,
    wildcard_constraints:
        shard=r"\d{4}",
        shards=r"\d{4}",
    threads: cpu_threads(2)
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
        manifest=f"{MANIFESTS}/{{dataset}}.parquet",
        parts=shard_parts,
    output:
        store_table("{dataset}"),
    log:
        f"{LOGS}/preprocess/{{dataset}}.log",
    params:
        short_side=CFG.data.store.short_side,
        settings=lambda wc: preprocess_settings(wc.dataset),
        stage=lambda wc: CPU_STAGE["preprocess"] if preprocess_shards(wc.dataset) == 1 else UNILEARN + " preprocess",
        work=lambda wc, threads: (
            f"--merge {preprocess_shards(wc.dataset)}" if preprocess_shards(wc.dataset) > 1
            else cpu_workers(wc, threads)
        ),  # fmt: skip
    threads: lambda wc: 1 if preprocess_shards(wc.dataset) > 1 else cpu_threads(2)
    priority: DATA_PRIORITY
    resources:
        local_heavy=lambda wc: 0 if preprocess_shards(wc.dataset) > 1 else CPU_STAGE_LOCAL_HEAVY,
    shell:
        "{params.stage} --manifest {input.manifest} --out {STORE} {params.settings} "
        "{params.work} > {log} 2>&1"
