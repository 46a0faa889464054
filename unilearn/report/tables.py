"""`unilearn tables TABLE`: one of the paper's Tables 1-5 from the pooled metrics of our runs, as
CSV (one row per method, test set and weights) and Markdown (ours beside the paper's number and
the gap). Each method is reported twice: with the weights of the last epoch, and with those of the
best epoch on the test split (as the authors report; `weights` last / best, one Markdown block
each).

Every row records the git sha, the config hash of the run and a hash of the manifests it was
computed on. The chance row (Table 1) is the best constant prediction on the same test set:
UAR = 1/K, WAR = the largest class's share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from unilearn.atomic import write_text
from unilearn.catalogue import DATASETS
from unilearn.report import layout, spec
from unilearn.report.paper import PAPER_PARAMS_M, paper_numbers
from unilearn.report.provenance import git_sha, manifest_hash


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


def build_table(name: str, cfg, runs: Path, manifests: Path, sha: str) -> pd.DataFrame:
    table = spec.table_spec(name, cfg)
    datasets = {DATASETS[c.train].store_table for r in table.rows for c in r.cells}
    datasets |= {DATASETS[c.test].store_table for r in table.rows for c in r.cells}
    data_hash = manifest_hash(manifests, datasets)
    params = _parameter_counts(table, cfg) if name == "table3" else {}
    records = []
    for weights in layout.weights_of(cfg):
        for row in table.rows:
            for cell in row.cells:
                records.append(_record(name, row, cell, read_metrics(runs, cell, weights), weights,
                                       data_hash, sha) | params.get(row.label, {}))  # fmt: skip
    return pd.DataFrame.from_records(records)


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
        "paper_uar": paper[0] if paper else None,
        "paper_war": paper[1] if paper else None,
        "gap_uar": round(uar - paper[0], 2) if paper else None,
        "gap_war": round(war - paper[1], 2) if paper else None,
        "n_clips": metrics["n"],
        "n_unreadable": metrics.get("n_unreadable", 0),
        "folds": " ".join(str(f) for f in metrics.get("folds") or []),
        "config_hash": metrics.get("config_hash") if row.experiment else "",
        "manifest_hash": data_hash,
        "git_sha": sha,
    }


def _parameter_counts(table: spec.TableSpec, cfg) -> dict[str, dict[str, float]]:
    """Table 3's parameter columns: ours at this config, ours at ViT-B, and the paper's."""
    import torch

    from unilearn.models import create_model
    from unilearn.models.params import count_parameters

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
        "UAR/WAR in %, pooled over all test folds. Cells: ours (paper, gap); the paper reports "
        "its best epoch on the test split."
    )
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
        of_weights = frame[frame["weights"] == weights]
        for part in parts:
            if part:
                lines += [f"*{part}*", ""]
            lines += _markdown_rows(of_weights[of_weights["part"] == part], table, header, extra)
            lines.append("")
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
        cells = [method]
        for d in table.datasets:
            hit = rows[rows["dataset"] == d]
            if hit.empty:
                cells += ["", ""]
                continue
            r = hit.iloc[0]
            cells += [_cell(r.uar, r.paper_uar, r.gap_uar), _cell(r.war, r.paper_war, r.gap_war)]
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


def _cell(ours: float, paper: float | None, gap: float | None) -> str:
    if paper is None or pd.isna(paper):
        return f"{ours:.2f}"
    return f"{ours:.2f} ({paper:.2f}, {gap:+.2f})"


def main(args: argparse.Namespace) -> int:
    from unilearn.config import load_config

    cfg = load_config(args.config, args.overrides)
    manifests = args.manifests or Path(cfg.data.workdir) / "manifests"
    table = spec.table_spec(args.table, cfg)
    frame = build_table(args.table, cfg, args.runs, manifests, git_sha())
    from unilearn.atomic import atomic_path

    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    md = args.out.with_suffix(".md")
    write_text(md, to_markdown(frame, table, cfg, synthetic=cfg.data.synthetic is not None) + "\n")
    print(f"{args.table}: {len(frame)} rows -> {args.out}, {md}")
    return 0
