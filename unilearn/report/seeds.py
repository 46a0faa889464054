"""Seeds (`seeds: [0, 1, 2]` in the config): every fine-tuning of a table runs once per seed, and
each cell of the table is the mean +- std over its seeds.

- A run's seed is part of its name: the run trained with the config's `seed` keeps its plain name
  (`unilearn`, `unilearn@n_experts=4`), any other seed adds `@seed=N` (`unilearn@seed=1`), so a
  one-seed config has exactly the runs, directories and W&B names it always had
  (`unilearn.report.runs` parses the suffix; `run_overrides` turns it into `seed=N`).
- Pre-training: with `seeds_pretrain: true` a seed's fine-tunings start from that seed's own
  pre-training (`pretrain/<mode>@seed=N/`); by default every seed starts from the one
  pre-training of `seed`. Published weights (`pretrain.init`) are one file for every seed.
- The CSV keeps each seed's row (column `seed`: the seed) and adds one row per cell with `seed`
  = `mean`: UAR/WAR the mean over the seeds, `uar_std`/`war_std` their sample standard deviation
  (ddof 1), `n_seeds` and `seeds`; the gaps to the paper are the mean's. A column whose value
  differs between the seeds (the run, its config hash...) is empty in the mean row. The
  Markdown shows the mean rows only, as `mean ± std`. Paired comparisons (`unilearn.report.
  tables`) pair the seeds: seed s of a row minus seed s of its reference, on the same test clips,
  one comparison per seed in the seeds' rows; the mean row holds the mean of those differences
  with its own interval and p-value from a bootstrap over both the test clips and the seeds
  (`unilearn.report.bootstrap.paired_over_seeds`). With one seed the table is unchanged: no
  `seed` column, no mean rows.

Torch-free: the workflow's plan, the tables and the engines' W&B naming use it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from unilearn.report.runs import Run, parse_run

MEAN = "mean"  # the `seed` of a cell's summary row in the CSV


def seed_list(cfg) -> list[int]:
    """The seeds a table's fine-tunings run with: `seeds`, else the one `seed`."""
    return list(cfg.seeds) if cfg.seeds else [cfg.seed]


def seeded(cfg) -> bool:
    """Whether the tables fan out over more than one seed."""
    return len(seed_list(cfg)) > 1


def with_seed(cfg, run: str | Run, seed: int) -> Run:
    """`run` trained with `seed`: its plain name for the config's `seed`, else `@seed=N`."""
    run = parse_run(run) if isinstance(run, str) else run
    return replace(run, seed=None if seed == cfg.seed else seed)


def run_seed(cfg, run: str | Run) -> int:
    """The seed a run trains with (its `@seed=N`, else the config's `seed`)."""
    run = parse_run(run) if isinstance(run, str) else run
    return cfg.seed if run.seed is None else run.seed


def seed_runs(cfg, run: str | Run) -> list[Run]:
    """One run per seed of `seed_list`."""
    return [with_seed(cfg, run, s) for s in seed_list(cfg)]


def seed_cells(cfg, cells, first_only: bool = False) -> list:
    """Each `spec.Cell` once per seed (its run renamed, `with_seed`); `first_only`: the first
    seed's cells only (the chance row: the same test set whatever the seed)."""
    seeds = seed_list(cfg)[:1] if first_only else seed_list(cfg)
    return [replace(c, run=with_seed(cfg, c.run, s).name) for c in cells for s in seeds]


def pretrain_seed(cfg, run: str | Run) -> int | None:
    """The seed suffix of a run's pre-training: its own seed under `seeds_pretrain`, else None
    (the one pre-training of `seed`)."""
    run = parse_run(run) if isinstance(run, str) else run
    return run.seed if cfg.seeds_pretrain else None


def pretrain_name(mode: str, seed: int | str | None) -> str:
    """`image+video` (the config's seed) or `image+video@seed=1`: the pre-training's folder."""
    return mode if seed is None else f"{mode}{_PRETRAIN_SEED}{seed}"


def parse_pretrain_name(name: str) -> tuple[str, int | None]:
    """`image+video@seed=1` -> ("image+video", 1); `video` -> ("video", None)."""
    mode, sep, seed = name.partition(_PRETRAIN_SEED)
    return mode, int(seed) if sep else None


_PRETRAIN_SEED = "@seed="


# -- the tables ---------------------------------------------------------------------------------

# the columns that name a table cell (a method on a test set, with some weights) whatever its seed
CELL_KEY = ["table", "weights", "part", "method", "experiment", "train_dataset", "dataset"]
_SPREAD = ("uar", "war")


def cell_key(row) -> tuple:
    """The `CELL_KEY` values of a row (a mapping or a pandas row), missing ones as ""."""
    return tuple("" if pd.isna(row[c]) else row[c] for c in CELL_KEY)


def summarise(
    frame: pd.DataFrame, cfg, over_seeds: dict[tuple, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """The CSV of a table with several seeds: a `seed` column after `run`, and after each cell's
    rows one `mean` row (module docstring); `over_seeds` maps a cell (`cell_key`) to its paired
    comparison over the seeds, which its mean row carries. One seed: `frame` as it is."""
    if not seeded(cfg) or frame.empty:
        return frame
    frame = frame.copy()
    seeds = [run_seed(cfg, r) if r else "" for r in frame["run"]]  # chance rows have no run
    frame.insert(frame.columns.get_loc("run") + 1, "seed", seeds)
    out: list[dict[str, Any]] = []
    for _, rows in frame.groupby(CELL_KEY, sort=False, dropna=False):
        out += rows.to_dict("records")
        if len(rows) > 1:
            paired = (over_seeds or {}).get(cell_key(rows.iloc[0]))
            out.append(_mean_row(rows, cfg) | (paired or {}))
    return pd.DataFrame.from_records(out, columns=[*frame.columns, "uar_std", "war_std",
                                                   "n_seeds", "seeds"])  # fmt: skip


def _mean_row(rows: pd.DataFrame, cfg) -> dict[str, Any]:
    """A cell's mean over its seeds; a column that differs between them is left empty."""
    row = {c: rows[c].iloc[0] if rows[c].nunique(dropna=False) == 1 else None for c in rows}
    row |= {"run": replace(parse_run(rows["run"].iloc[0]), seed=None).name, "seed": MEAN}
    for metric in _SPREAD:
        row[metric] = round(float(rows[metric].mean()), 2)
        row[f"{metric}_std"] = round(float(rows[metric].std(ddof=1)), 2)
        paper = row.get(f"paper_{metric}")
        if f"gap_{metric}" in row and paper is not None and not pd.isna(paper):
            row[f"gap_{metric}"] = round(row[metric] - paper, 2)
    for diff in ("diff_uar", "diff_war"):  # the paired differences: their mean over the seeds
        if diff in rows and rows[diff].notna().all():
            row[diff] = round(float(rows[diff].mean()), 2)
    # the per-seed intervals do not describe the mean: `summarise` sets the over-seeds ones
    row |= {c: None for c in rows if c.startswith(("diff_uar_", "diff_war_", "p_"))}
    row["n_seeds"] = len(rows)
    row["seeds"] = " ".join(str(s) for s in rows["seed"])
    return row


def markdown_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the Markdown shows: with seeds, each cell's mean row (and the chance rows)."""
    if "seed" not in frame:
        return frame
    return frame[frame["seed"].isin([MEAN, ""])]


def markdown_note(cfg) -> list[str]:
    """The Markdown's line on the seeds, if there are several."""
    if not seeded(cfg):
        return []
    seeds = ", ".join(str(s) for s in seed_list(cfg))
    return [
        f"Seeds {seeds}: each cell is the mean ± std (sample, ddof 1) over the seeds' fine-tunings; "
        "the CSV keeps each seed's row beside the mean row. A paired comparison is given per "
        "seed (seed s minus the reference's seed s) and as the mean over the seeds, whose "
        "interval and p-value resample both the test clips and the seeds."
    ]
