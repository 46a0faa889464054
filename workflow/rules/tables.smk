# Overrides go right after the table/figure name: argparse takes positionals in one run.
# The paper's tables (CSV + Markdown: ours, the paper's number, the gap) and figures (PNG + PDF),
# each in `snakemake --report results/report.html` with its caption (workflow/report/).


rule table:
    input:
        unpack(lambda wc: PLAN.report_inputs(wc.table)),
    output:
        csv=report(PLAN.result("{table}", "csv"), caption="../report/table.rst", category="Tables",
                   labels={"table": "{table}"}),
        md=PLAN.result("{table}", "md"),
    log:
        PLAN.log("report", "{table}"),
    params:
        config_hash=CONFIG_HASH[None],
    shell:
        "{UNILEARN} tables {wildcards.table} {OVERRIDE_ARGS} {CONFIG_ARGS} --runs {RUNS} "
        "--manifests {MANIFESTS} --out {output.csv:q} > {log:q} 2>&1"


rule figure:
    input:
        unpack(lambda wc: PLAN.report_inputs(wc.figure)),
    output:
        png=report(PLAN.result("{figure}", "png"), caption="../report/figure.rst", category="Figures",
                   labels={"figure": "{figure}"}),
        pdf=PLAN.result("{figure}", "pdf"),
    log:
        PLAN.log("report", "{figure}"),
    params:
        config_hash=CONFIG_HASH[None],
    shell:
        "{UNILEARN} figure {wildcards.figure} {OVERRIDE_ARGS} {CONFIG_ARGS} --runs {RUNS} "
        "--out {output.png:q} > {log:q} 2>&1"
