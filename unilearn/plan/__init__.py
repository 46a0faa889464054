"""What the Snakemake workflow runs, worked out from the unilearn config: how each stage starts
(`commands`), and each job's inputs and arguments (`jobs`). `workflow/rules/*.smk` build one
`Plan` at parse time and only wire its answers to the `unilearn` command line."""

from unilearn.plan.commands import StageCommands
from unilearn.plan.jobs import Plan, PlanError

__all__ = ["Plan", "PlanError", "StageCommands"]
