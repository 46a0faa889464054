# Dual-modal MAE pre-training, once per pre-training mode an experiment needs (paper Table 2).
# A GPU stage: with `launcher: submitit` (config or the slurm profile) it runs as a Slurm job.

from unilearn.catalogue import pretrain_sources
from unilearn.engine.pretrain_init import init_checkpoint


def pretrain_stores(mode):
    """The store tables a pre-training mode reads (none, one or both of its sources)."""
    sources = pretrain_sources(mode, CFG.pretrain.image_dataset, CFG.pretrain.video_dataset)
    return [store_table(d) for d in dict.fromkeys(d for d in sources if d)]


# Published weights (`pretrain.init`: mode -> file) stand in for a mode's pre-training: its
# fine-tunings start from the file and the pre-training never runs. Checked here, at parse time.
try:
    PRETRAIN_INIT = {mode: init_checkpoint(CFG, mode) for mode in CFG.pretrain.init}
except FileNotFoundError as error:
    raise WorkflowError(f"invalid unilearn config: {error}") from None


def pretrain_checkpoint(mode):
    """The checkpoint a mode's fine-tunings start from: the published file, or our pre-training's."""
    if mode in PRETRAIN_INIT:
        return str(PRETRAIN_INIT[mode])
    return f"{layout.pretrain_dir(RUNS, mode)}/checkpoint.pt"


rule pretrain:
    input:
        lambda wc: pretrain_stores(wc.mode),
    output:
        pretrain_checkpoint("{mode}"),
    log:
        f"{LOGS}/pretrain/{{mode}}.log",
    params:
        out=lambda wc: layout.pretrain_dir(RUNS, wc.mode),
        config_hash=CONFIG_HASH["pretrain"],
        fresh=lambda wc: fresh_if_config_changed(
            layout.pretrain_dir(RUNS, wc.mode), CONFIG_HASH["pretrain"]
        ),
    threads: GPU_STAGE_THREADS
    priority: 40  # every fine-tuning waits for one
    shell:
        "( {params.fresh} ) > {log} 2>&1; "
        "{GPU_STAGE[pretrain]} {CONFIG_ARGS} --mode {wildcards.mode:q} --store {STORE} "
        "--out {params.out:q} --no-progress {OVERRIDE_ARGS} >> {log} 2>&1"
