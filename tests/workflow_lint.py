"""`snakemake --lint` of the workflow, with every warning it still gives justified below: exit 1
on any other (a new kind of warning, or one of these in a new place is fine only if it is the
same kind). `make lint` runs it; so does tests/test_workflow_lint.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Warning title (start) -> why the workflow keeps it.
JUSTIFIED = {
    "Shell command directly uses variable": (
        "UNILEARN, GPU_STAGE, CPU_STAGE, CONFIG_ARGS, OVERRIDE_ARGS, SYNTH, STORE, RUNS, "
        "MANIFESTS are the invocation of the one `unilearn` CLI, fixed for a whole workflow run "
        "(`unilearn.plan`); what changes a result is tracked by each rule's `config_hash` param "
        "(Snakemake re-runs on a change). As params they would re-run every job whenever the "
        "interpreter's path or the runs folder moves"
    ),
    "Specify a conda environment or container for each rule": (
        "every rule runs the same `unilearn` package from the one environment that `make "
        "setup` / environment.yml builds; a per-rule environment would only duplicate it"
    ),
}
_WARNING = re.compile(r"^\s+\* (?P<title>.+?):?$")
_WHERE = re.compile(r"^Lints for (?P<where>.+?):$")


def lint_warnings() -> list[tuple[str, str]]:
    """(where, title) of every warning `snakemake --lint` gives for the workflow."""
    snakemake = Path(sys.executable).with_name("snakemake")
    done = subprocess.run([str(snakemake), "--lint"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    text = done.stdout + done.stderr
    if done.returncode not in (0, 1) or "Traceback" in text:
        raise RuntimeError(f"snakemake --lint failed:\n{text[-4000:]}")
    found, where = [], "?"
    for line in text.splitlines():
        if m := _WHERE.match(line):
            where = m["where"]
        elif m := _WARNING.match(line):
            found.append((where, m["title"]))
    return found


def unjustified(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(w, t) for w, t in found if not any(t.startswith(j) for j in JUSTIFIED)]


def main() -> int:
    found = lint_warnings()
    bad = unjustified(found)
    for where, title in bad:
        print(f"snakemake --lint: {where}: {title}", file=sys.stderr)
    print(f"snakemake --lint: {len(found)} warning(s), {len(found) - len(bad)} justified "
          f"in {Path(__file__).name}, {len(bad)} not")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
