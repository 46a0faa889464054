"""`unilearn tables TABLE`: one of the paper's Tables 1-5 from the pooled metrics of our runs, as
CSV (one row per method, test set and weights) and Markdown (ours beside the paper's number and
the gap). Each method is reported twice: with the weights of the last epoch, and with those of the
best epoch on the test split (as the authors report; `weights` last / best, one Markdown block
each).

Every UAR/WAR carries its 95% bootstrap interval (`uar_lo`, `uar_hi`, `war_lo`, `war_hi`; test
clips resampled within each fold, then pooled; `report.bootstrap`), and every ablation row of
Tables 2-5, and VideoMAE in Table 1, its paired comparison with the reference row (UniLearn) on
the same test clips: the difference, its paired-bootstrap interval and a two-sided p-value
(`diff_uar`, `diff_uar_lo`, `diff_uar_hi`, `p_uar`, the same for WAR; `unilearn.report.bootstrap`
defines the p-value). A cell whose test lost clips it could not read (`n_unreadable` > 0) is
marked with a dagger in the Markdown.

Every row records the git sha, the config hash of the run and a hash of the manifests it was
computed on. The chance row (Table 1) is the best constant prediction on the same test set:
UAR = 1/K, WAR = the largest class's share.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from unilearn import layout
from unilearn.atomic import write_text
from unilearn.catalogue import DATASETS, get_label_set
from unilearn.report import seeds, spec, uncertainty
from unilearn.report.provenance import git_sha, manifest_hash
from unilearn.report.spec import PAPER_PARAMS_M, paper_numbers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", choices=spec.TABLES, help="which table of the paper")
    add_report_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="TABLE.csv",
                        help="CSV output; the Markdown twin is written beside (.md)")  # fmt: skip


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by `unilearn tables` and `unilearn figure`."""
    parser.add_argument("--config", action="append", required=True, type=Path, metavar="YAML",
                        help="the workflow's config file(s), repeat to merge")  # fmt: skip
    parser.add_argument("--runs", required=True, type=Path,
                        help="runs root of the workflow (runs/<config name>): metrics/ and finetune/ "
                        "under it")  # fmt: skip
    parser.add_argument("--manifests", type=Path, default=None,
                        help="manifest directory, hashed into each row (default: <data.workdir>/manifests)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="the overrides the workflow ran with")  # fmt: skip


def read_metrics(runs: Path, cell: spec.Cell, weights: str = "last") -> dict[str, Any]:
    path = layout.metrics_path(runs, cell.run, cell.train, cell.test, weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: metrics of run {cell.run} (fine-tuned on {cell.train}, tested on {cell.test}) "
            "missing; build it with the workflow (`snakemake {path}`)"
        )
    return json.loads(path.read_text())


def chance(metrics: dict[str, Any]) -> tuple[float, float]:
    """(UAR, WAR) in percent of the best constant predictor on this test set."""
    support = [n for n in metrics["support"].values() if n > 0]
    return 100.0 / len(support), 100.0 * max(support) / sum(support)


def build_table(name: str, cfg, runs: Path, manifests: Path,
                sha: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:  # fmt: skip
    """The table's rows, and its paired comparisons (`add_uncertainty`)."""
    table = spec.table_spec(name, cfg)
    datasets = {DATASETS[c.train].store_table for r in table.rows for c in r.cells}
    datasets |= {DATASETS[c.test].store_table for r in table.rows for c in r.cells}
    data_hash = manifest_hash(manifests, datasets)
    params = _parameter_counts(table, cfg) if name == "table3" else {}
    records = []
    for weights in layout.weights_of(cfg):
        for row in table.rows:
            for cell in seeds.seed_cells(cfg, row.cells, first_only=row.experiment is None):
                records.append(_record(name, row, cell, read_metrics(runs, cell, weights), weights,
                                       data_hash, sha) | params.get(row.label, {}))  # fmt: skip
    frame, comparisons, over_seeds = add_uncertainty(
        pd.DataFrame.from_records(records), table, cfg, runs
    )
    return seeds.summarise(frame, cfg, over_seeds), comparisons


def _record(name, row, cell, metrics, weights, data_hash, sha) -> dict[str, Any]:
    """One CSV row: a method on one test set with the weights of the last or the best epoch."""
    if row.experiment is None:
        uar, war = chance(metrics)
        paper = None
    else:
        uar, war = 100 * metrics["uar"], 100 * metrics["war"]
        paper = paper_numbers(name, row.label, cell.test)
    return {
        "table": name,
        "weights": weights,
        "part": row.part,
        "method": row.label,
        "experiment": row.experiment or "",
        "run": cell.run if row.experiment else "",
        "train_dataset": cell.train,
        "dataset": cell.test,
        "uar": round(uar, 2),
        "war": round(war, 2),
        **_interval_columns(metrics if row.experiment else {}),
        "paper_uar": paper[0] if paper else None,
        "paper_war": paper[1] if paper else None,
        "gap_uar": round(uar - paper[0], 2) if paper else None,
        "gap_war": round(war - paper[1], 2) if paper else None,
        "n_clips": metrics.get("n_clips", metrics["n"]),  # the test set: scored + unreadable
        "n_scored": metrics["n"],
        "n_unreadable": metrics.get("n_unreadable", 0),
        "folds": " ".join(str(f) for f in metrics.get("folds") or []),
        "config_hash": metrics.get("config_hash") if row.experiment else "",
        "manifest_hash": data_hash,
        "git_sha": sha,
    }


# -- intervals and paired comparisons ------------------------------------------------------------
# Kept apart from the rows above: each takes a cell's per-fold predictions, so a caller with
# several seeds of a cell can call them once per seed.

REFERENCE = "unilearn"  # the experiment of every table's reference row
PAIRED_COLUMNS = ("diff_uar", "diff_uar_lo", "diff_uar_hi", "p_uar",
                  "diff_war", "diff_war_lo", "diff_war_hi", "p_war")  # fmt: skip


def _interval_columns(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The interval `unilearn aggregate` wrote, in percent (None where the file has none)."""
    return {k: round(100 * metrics[k], 2) if metrics.get(k) is not None else None
            for k in uncertainty.INTERVAL_KEYS}  # fmt: skip


def reference_cells(table: spec.TableSpec) -> dict[tuple[str, str], tuple[str, spec.Cell]]:
    """(part, test dataset) -> (label, cell) of the reference row (UniLearn) of that part (else
    of the table) on that test set."""
    refs: dict[tuple[str, str], tuple[str, spec.Cell]] = {}
    parts = {r.part for r in table.rows}
    for row in (r for r in table.rows if r.experiment == REFERENCE):
        for cell in row.cells:
            for part in parts:
                if part == row.part or (part, cell.test) not in refs:
                    refs[(part, cell.test)] = (row.label, cell)
    return refs


def add_uncertainty(frame: pd.DataFrame, table: spec.TableSpec, cfg, runs: Path
                    ) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[tuple, dict]]:  # fmt: skip
    """Fill the intervals a metrics file lacks (from its predictions) and add the paired
    comparison of every non-reference row with its reference (`reference`, `n_paired`,
    `PAIRED_COLUMNS` in percent points; p-values as they are). Also returns each comparison in
    fractions with its cells (what W&B logs) and, with several seeds, each compared cell's
    comparison over its seeds (`seeds.cell_key` -> the same columns, for its mean row)."""
    boot = cfg.report.bootstrap
    cache: dict[tuple[spec.Cell, str], list[pd.DataFrame]] = {}

    def predictions(cell: spec.Cell, weights: str) -> list[pd.DataFrame]:
        if (cell, weights) not in cache:
            paths = layout.predictions_for(runs, cell.run, cell.train, cell.test, weights)
            cache[(cell, weights)] = uncertainty.read_fold_predictions(paths)
        return cache[(cell, weights)]

    refs = reference_cells(table)
    columns: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    seed_pairs: dict[tuple, list] = {}  # cell -> (its predictions, its reference's) per seed
    labels: dict[tuple, str] = {}
    for r in frame.itertuples(index=False):
        out: dict[str, Any] = {}
        if r.experiment:
            cell = spec.Cell(r.run, r.train_dataset, r.dataset)
            k = get_label_set(r.dataset).num_classes
            if any(pd.isna(getattr(r, c)) for c in uncertainty.INTERVAL_KEYS):
                got = uncertainty.interval(predictions(cell, r.weights), k, boot)
                out |= {c: round(100 * v, 2) for c, v in got.items()}
            label, ref = refs.get((r.part, r.dataset), (None, None))
            if ref is not None:  # seed s of a row is compared with seed s of its reference
                seed = seeds.run_seed(cfg, r.run)
                ref = replace(ref, run=seeds.with_seed(cfg, ref.run, seed).name)
            if ref is not None and ref != cell:
                what = f"{table.name} {r.method} ({r.weights} epoch, {r.dataset})"
                got = uncertainty.compare(predictions(cell, r.weights),
                                          predictions(ref, r.weights), k, boot, what)  # fmt: skip
                out |= _paired_percent(got) | {"reference": label}
                comparisons.append({"cell": cell, "reference": ref, "weights": r.weights, **got})
                key = seeds.cell_key(r._asdict())
                seed_pairs.setdefault(key, []).append(
                    (predictions(cell, r.weights), predictions(ref, r.weights))
                )
                labels[key] = what
        columns.append(out)
    filled = pd.DataFrame.from_records(columns, index=frame.index)
    frame = frame.copy()
    for c in ("reference", "n_paired", *PAIRED_COLUMNS):
        if c not in filled:
            filled[c] = None
    for c in filled.columns:
        frame[c] = filled[c].combine_first(frame[c]) if c in frame else filled[c]
    frame["n_paired"] = frame["n_paired"].astype("Int64")
    over_seeds = {}
    for key, pairs in seed_pairs.items():
        if len(pairs) > 1:
            k = get_label_set(key[seeds.CELL_KEY.index("dataset")]).num_classes
            got = uncertainty.compare_over_seeds(pairs, k, boot, labels[key])
            over_seeds[key] = _paired_percent(got)
    return frame, comparisons, over_seeds


def _paired_percent(got: dict[str, Any]) -> dict[str, Any]:
    """A comparison's `PAIRED_COLUMNS` as the CSV holds them (differences in percent points)
    and `n_paired`."""
    return {c: round(100 * got[c], 2) if c.startswith("diff") else round(got[c], 4)
            for c in PAIRED_COLUMNS} | {"n_paired": got["n_paired"]}  # fmt: skip


def _parameter_counts(table: spec.TableSpec, cfg) -> dict[str, dict[str, float]]:
    """Table 3's parameter columns: ours at this config, ours at ViT-B, and the paper's."""
    import torch

    from unilearn.models import create_model
    from unilearn.models.moae import count_parameters

    # The paper's shape: ViT-B/16, 16 x 160^2, 8 experts, top-2 (its Table 3 counts).
    vit_b = cfg.with_overrides(
        [("model.size", "base"), ("model.width", None), ("model.depth", None),
         ("model.heads", None), ("model.input_size", 160), ("model.num_frames", 16),
         ("model.moae.n_experts", 8), ("model.moae.top_k", 2)]
    )  # fmt: skip
    out = {}
    for row in table.rows:
        cell = row.cells[0]
        counts = {}
        for prefix, c in (("params", cfg), ("vitb_params", vit_b)):
            resolved = c.resolve_experiment(row.experiment, cell.train)
            with torch.device("meta"):
                model = create_model(resolved.model_name, **resolved.model_kwargs)
            n = count_parameters(model, "dfer")
            counts[f"{prefix}_active_M"] = round(n["active"] / 1e6, 2)
            counts[f"{prefix}_total_M"] = round(n["total"] / 1e6, 2)
        paper = PAPER_PARAMS_M.get(row.label)
        counts["paper_params_test_M"] = paper[0] if paper else None
        counts["paper_params_train_M"] = paper[1] if paper else None
        out[row.label] = counts
    return out


def to_markdown(frame: pd.DataFrame, table: spec.TableSpec, cfg, synthetic: bool) -> str:
    """Ours beside the paper's number and the gap, one column pair per test set."""
    lines = [f"# {table.title}", ""]
    first = frame.iloc[0]
    lines.append(
        f"Config `{cfg.name}`; git `{first.git_sha}`; manifests `{first.manifest_hash}`. "
        "UAR/WAR in %, pooled over all test folds. Cells: ours [95% bootstrap interval] "
        "(paper, gap); the paper reports its best epoch on the test split. Under each table: "
        "each row minus its reference row (UniLearn) on the same test clips [95% paired-bootstrap "
        "interval], p the two-sided paired-bootstrap p-value, "
        f"* p < {1 - cfg.report.bootstrap.confidence:.2g}."
    )
    lines += seeds.markdown_note(cfg)
    if synthetic:
        lines.append(
            "Data are the bundled synthetic datasets: the numbers check the pipeline, they are "
            "not comparable with the paper's."
        )
    lines.append("")
    header = ["Method"]
    for d in table.datasets:
        header += [f"{DATASETS[d].title} UAR", f"{DATASETS[d].title} WAR"]
    extra = [c for c in ("params_active_M", "params_total_M", "vitb_params_active_M",
                         "vitb_params_total_M") if c in frame]  # fmt: skip
    header += [_PARAM_HEADERS[c] for c in extra]
    parts = list(dict.fromkeys(frame["part"]))
    for weights in layout.weights_of(cfg):
        label = layout.weights_label(weights, cfg)
        lines += [f"**{label[0].upper() + label[1:]}**", ""]
        of_weights = seeds.markdown_frame(frame[frame["weights"] == weights])
        for part in parts:
            if part:
                lines += [f"*{part}*", ""]
            lines += _markdown_rows(of_weights[of_weights["part"] == part], table, header, extra)
            lines.append("")
            block = frame[frame["weights"] == weights]
            lines += _paired_rows(block[block["part"] == part], table,
                                  1 - cfg.report.bootstrap.confidence)  # fmt: skip
    lines += _unreadable_note(frame)
    return "\n".join(lines)


_PARAM_HEADERS = {
    "params_active_M": "Params test (M)",
    "params_total_M": "Params train (M)",
    "vitb_params_active_M": "ViT-B test (M, paper)",
    "vitb_params_total_M": "ViT-B train (M, paper)",
}


def _markdown_rows(frame: pd.DataFrame, table: spec.TableSpec, header: list[str],
                   extra: list[str]) -> list[str]:  # fmt: skip
    """One Markdown table: a line per method, a column pair per test set."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, rows in frame.groupby("method", sort=False):
        cells = [method, *_per_test_set(rows, table, _metric_cells)]
        r = rows.iloc[0]
        for c in extra:
            # The paper's counts are for ViT-B: shown beside ours at that shape.
            paper_col = {"vitb_params_active_M": "paper_params_test_M",
                         "vitb_params_total_M": "paper_params_train_M"}.get(c)  # fmt: skip
            paper = r.get(paper_col) if paper_col else None
            cells.append(
                f"{r[c]:.1f}" + ("" if paper is None or pd.isna(paper) else f" ({paper:.0f})")
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _per_test_set(rows: pd.DataFrame, table: spec.TableSpec, cells_of) -> list[str]:
    """A column pair per test set of the table: `cells_of(row)` of the method's row on it, blank
    where the method is not tested on it."""
    cells: list[str] = []
    for d in table.datasets:
        hit = rows[rows["dataset"] == d]
        cells += ["", ""] if hit.empty else cells_of(hit.iloc[0])
    return cells


def _metric_cells(r) -> list[str]:
    """UAR and WAR of one row: ours [interval] (paper, gap), † if its test lost clips."""
    lost = "†" if r.experiment and r.n_unreadable > 0 else ""
    return [_cell(r.uar, r.paper_uar, r.gap_uar, r.uar_lo, r.uar_hi, lost, r.get("uar_std")),
            _cell(r.war, r.paper_war, r.gap_war, r.war_lo, r.war_hi, lost, r.get("war_std"))]  # fmt: skip


def _cell(ours: float, paper: float | None, gap: float | None, lo: float | None = None,
          hi: float | None = None, mark: str = "", std: float | None = None) -> str:  # fmt: skip
    """`43.41 [42.1, 44.7] (43.41, +0.00)`: ours, its interval, the paper's number and the gap;
    over several seeds `43.41 ± 0.52 (43.41, +0.00)`: their mean and std (`seeds.summarise`)."""
    text = f"{ours:.2f}{mark}"
    if std is not None and not pd.isna(std):
        text = f"{ours:.2f} ± {std:.2f}{mark}"
    elif lo is not None and not pd.isna(lo):
        text += f" [{lo:.1f}, {hi:.1f}]"
    if paper is None or pd.isna(paper):
        return text
    return f"{text} ({paper:.2f}, {gap:+.2f})"


def _paired_rows(frame: pd.DataFrame, table: spec.TableSpec, alpha: float) -> list[str]:
    """The paired comparisons of one block: `-0.76 [-1.9, +0.4] p 0.21` per row and test set
    (with seeds: per seed, then the mean over the seeds)."""
    compared = frame[frame["diff_uar"].notna()]
    if compared.empty:
        return []
    header = ["Minus its reference", "Reference"]
    for d in table.datasets:
        header += [f"{DATASETS[d].title} ΔUAR", f"{DATASETS[d].title} ΔWAR"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by = ["method", "seed"] if "seed" in compared else ["method"]  # seed s minus the reference's s
    for key, rows in compared.groupby(by, sort=False):
        method = key[0] if len(key) == 1 else f"{key[0]}, seed {key[1]}"
        if len(key) == 2 and key[1] == seeds.MEAN:
            method = f"{key[0]}, mean of {int(rows.iloc[0].n_seeds)} seeds"
        cells = [method, str(rows.iloc[0].reference)]
        cells += _per_test_set(rows, table, lambda r: [
            _diff(r.diff_uar, r.diff_uar_lo, r.diff_uar_hi, r.p_uar, alpha),
            _diff(r.diff_war, r.diff_war_lo, r.diff_war_hi, r.p_war, alpha)])  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _diff(diff: float, lo: float, hi: float, p: float, alpha: float) -> str:
    star = "*" if p < alpha else ""
    return f"{diff:+.2f} [{lo:+.1f}, {hi:+.1f}] p {p:.2g}{star}"


def _unreadable_note(frame: pd.DataFrame) -> list[str]:
    """The footnote of the dagger: which cells' tests lost clips, and how many."""
    lost = frame[(frame["experiment"] != "") & (frame["n_unreadable"] > 0)]
    if lost.empty:
        return []
    cells = sorted({f"{r.method} on {DATASETS[r.dataset].title}: {int(r.n_unreadable)} of "
                    f"{int(r.n_clips)} clips" for r in lost.itertuples()})  # fmt: skip
    return ["† the test lost clips it could not read (left out of the metrics; the quarantine "
            "files beside the predictions list them): " + "; ".join(cells) + ".", ""]  # fmt: skip


def main(args: argparse.Namespace) -> int:
    write_table(args)
    return 0


def write_table(args: argparse.Namespace):
    """Build and write the table's CSV and Markdown; returns the config and the table's paired
    comparisons (`unilearn tables` logs them to W&B: `unilearn.report.tables_cli`)."""
    from unilearn.config import load_config

    cfg = load_config(args.config, args.overrides)
    manifests = args.manifests or layout.manifests_dir(cfg.data.workdir)
    table = spec.table_spec(args.table, cfg)
    frame, comparisons = build_table(args.table, cfg, args.runs, manifests, git_sha())
    from unilearn.atomic import atomic_path

    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    md = args.out.with_suffix(".md")
    write_text(md, to_markdown(frame, table, cfg, synthetic=cfg.data.synthetic is not None) + "\n")
    print(f"{args.table}: {len(frame)} rows -> {args.out}, {md}")
    return cfg, comparisons
