# Overrides go right after the table/figure name: argparse takes positionals in one run.
# The paper's tables (CSV + Markdown: ours, the paper's number, the gap) and figures (PNG + PDF),
# each in `snakemake --report results/report.html` with its caption (workflow/report/).


rule table:
    input:
        unpack(lambda wc: PLAN.report_inputs(wc.table)),
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
        unpack(lambda wc: PLAN.report_inputs(wc.figure)),
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
