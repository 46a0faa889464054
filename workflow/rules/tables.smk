# Overrides go right after the table/figure name: argparse takes positionals in one run.
# The paper's tables (CSV + Markdown: ours, the paper's number, the gap) and figures (PNG + PDF),
# each in `snakemake --report results/report.html` with its caption (workflow/report/).


def manifests_of(cells):
    datasets = {DATASETS[c.train].store_table for c in cells} | {
        DATASETS[c.test].store_table for c in cells
    }
    return [f"{MANIFESTS}/{d}.parquet" for d in sorted(datasets)]


def report_inputs(target):
    cells = spec.required_cells(target, CFG)
    # tables show the last and the best epoch; figures the last
    weights = layout.WEIGHTS if target in TABLES else ("last",)
    metrics = [layout.metrics_path(RUNS, c.run, c.train, c.test, w) for c in cells for w in weights]
    sidecars = []
    if target in ("figure4a", "figure4b"):  # they read what the test wrote beside its predictions
        for c in cells:
            for prediction in layout.predictions_for(RUNS, c.run, c.train, c.test):
                sidecars.append(layout.prediction_sidecar(prediction, ".expert_usage.json"))
                sidecars.append(layout.prediction_sidecar(prediction, ".centres.parquet"))
    return {"metrics": metrics, "sidecars": sidecars, "manifests": manifests_of(cells)}


rule table:
    input:
        unpack(lambda wc: report_inputs(wc.table)),
    output:
        csv=report(f"{RESULTS}/{{table}}.csv", caption="../report/table.rst", category="Tables",
                   labels={"table": "{table}"}),
        md=f"{RESULTS}/{{table}}.md",
    log:
        f"{LOGS}/report/{{table}}.log",
    params:
        config_hash=CONFIG_HASH[None],
    shell:
        "{UNILEARN} tables {wildcards.table} {OVERRIDE_ARGS} {CONFIG_ARGS} --runs {RUNS} "
        "--manifests {MANIFESTS} --out {output.csv:q} > {log:q} 2>&1"


rule figure:
    input:
        unpack(lambda wc: report_inputs(wc.figure)),
    output:
        png=report(f"{RESULTS}/{{figure}}.png", caption="../report/figure.rst", category="Figures",
                   labels={"figure": "{figure}"}),
        pdf=f"{RESULTS}/{{figure}}.pdf",
    log:
        f"{LOGS}/report/{{figure}}.log",
    params:
        config_hash=CONFIG_HASH[None],
    shell:
        "{UNILEARN} figure {wildcards.figure} {OVERRIDE_ARGS} {CONFIG_ARGS} --runs {RUNS} "
        "--out {output.png:q} > {log:q} 2>&1"
