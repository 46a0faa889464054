# Data: synthetic datasets (demo) or the user's native trees, checked by `unilearn doctor`
# (the demo's synthetic trees too: they pass), read into Parquet manifests, then preprocessed
# into the clip store.

NATIVE_DIRS = {
    "dfew": "DFEW",
    "mafw": "MAFW",
    "ferv39k": "FERV39K",
    "affectnet": "AffectNet",
    "voxceleb2": "VoxCeleb2",
}
DOCTOR_ON = CFG.data.doctor.enabled
# Data first: every dataset's store before any training, so the last datasets' fine-tunings do
# not start alone at the end of the run (the demo's FERV39K store came last: 90 s on one core).
DATA_PRIORITY = 50


def native_root(dataset):
    if CFG.data.synthetic:
        return f"{SYNTH}/{NATIVE_DIRS[dataset]}"
    root = getattr(CFG.data.roots, dataset)
    if root is None:
        raise WorkflowError(
            f"data.roots.{dataset}: not set, but a requested target needs {NATIVE_DIRS[dataset]}; "
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
    priority: DATA_PRIORITY
    resources:
        local_heavy=1,
    shell:
        "{UNILEARN} doctor {wildcards.dataset} --root {params.root:q} --report {output} "
        "--no-progress > {log} 2>&1 || ( [ {params.override} = 1 ] && "
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
    threads: 2
    priority: DATA_PRIORITY
    resources:
        local_heavy=1,
    shell:
        "{UNILEARN} manifest {wildcards.dataset} --root {params.root:q} --out {MANIFESTS} "
        "--workers {threads} --no-progress > {log} 2>&1"


rule preprocess:
    input:
        f"{MANIFESTS}/{{dataset}}.parquet",
    output:
        store_table("{dataset}"),
    log:
        f"{LOGS}/preprocess/{{dataset}}.log",
    params:
        short_side=CFG.data.store.short_side,
    threads: 2
    priority: DATA_PRIORITY
    resources:
        local_heavy=1,
    shell:
        "{UNILEARN} preprocess --manifest {input} --out {STORE} "
        "--short-side {params.short_side} --workers {threads} > {log} 2>&1"
