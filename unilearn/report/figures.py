"""`unilearn figure NAME`: the paper's Figures 3-4 from our runs, as PNG and, beside it, vector
PDF (matplotlib).

- figure3a: UAR/WAR vs number of experts (one fine-tuning run per point of `sweeps.n_experts`),
  each point with its 95% bootstrap interval as an error bar
- figure3b: UAR/WAR vs proportion of the SFER dataset (`sweeps.sfer_proportion`), likewise
- figure4a: share of tokens routed to each expert, per MoAE layer and test dataset (UniLearn)
- figure4b: cosine similarity of class-centre features, DFER test set vs SFER test set, of one
  jointly fine-tuned UniLearn model

Nothing but the plot is drawn (no title, no footer: a caption belongs to the paper or the
report). Provenance (config name, git sha, config hashes) goes into both files' metadata and a
`FIGURE.json` sidecar.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from unilearn import layout
from unilearn.catalogue import DATASETS
from unilearn.report import spec, uncertainty
from unilearn.report.provenance import git_sha
from unilearn.report.runs import value_slug
from unilearn.report.tables import add_report_arguments, read_metrics

AXIS_LABELS = {"n_experts": "number of experts", "sfer_proportion": "proportion of SFER data used"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("figure", choices=spec.FIGURES, help="which figure of the paper")
    add_report_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="FIGURE.png",
                        help="PNG output; the PDF and the provenance sidecar (.json) go beside")  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def provenance(name: str, cfg, hashes: set[str], description: str) -> dict[str, Any]:
    """Where a figure came from: what `_save` writes into its metadata and sidecar."""
    return {
        "figure": name,
        "description": description,
        "config": cfg.name,
        "git_sha": git_sha(),
        "config_hashes": sorted(h for h in hashes if h),
        "synthetic_data": cfg.data.synthetic is not None,
    }


def sweep_figure(name: str, cfg, runs: Path, out: Path) -> None:
    """UAR and WAR against the swept value (Figure 3a/3b)."""
    sweep = spec.FIGURE_SWEEPS[name]
    cells = spec.figure_cells(name, cfg)
    values = list(cfg.sweeps[sweep])
    metrics = [read_metrics(runs, c) for c in cells]
    uar = [100 * m["uar"] for m in metrics]
    war = [100 * m["war"] for m in metrics]
    # error bars: each point's 95% bootstrap interval (`unilearn aggregate`)
    bounds = [
        uncertainty.cell_interval(m, layout.predictions_for(runs, c.run, c.train, c.test),
                                  cfg.report.bootstrap)
        for m, c in zip(metrics, cells)
    ]  # fmt: skip
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=150)
    numeric = all(isinstance(v, (int, float)) for v in values)
    x = values if numeric else list(range(len(values)))
    # the two bars of a point side by side, not on top of each other
    shift = 0.012 * (max(x) - min(x) if len(x) > 1 else 1)
    for name, ys, style, side in (("UAR", uar, "o-", -1), ("WAR", war, "s--", 1)):
        key = name.lower()
        (line,) = ax.plot(x, ys, style, label=name)
        err = [[y - 100 * b[f"{key}_lo"] for y, b in zip(ys, bounds)],
               [100 * b[f"{key}_hi"] - y for y, b in zip(ys, bounds)]]  # fmt: skip
        ax.errorbar([xi + side * shift for xi in x], ys, yerr=np.clip(err, 0, None), fmt="none",
                    ecolor=line.get_color(), elinewidth=1, capsize=2.5, alpha=0.8)  # fmt: skip
    for xi, u, w in zip(x, uar, war):
        ax.annotate(
            f"{u:.1f}",
            (xi, u),
            textcoords="offset points",
            xytext=(0, -12),
            ha="center",
            fontsize=7,
        )
        ax.annotate(
            f"{w:.1f}", (xi, w), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
        )
    ax.set_xticks(x, [value_slug(v) for v in values])
    ax.margins(y=0.15)
    ax.set_xlabel(AXIS_LABELS.get(sweep, sweep))
    ax.set_ylabel("%")
    dataset = DATASETS[cells[0].test].title
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    about = (f"UniLearn on {dataset}: UAR and WAR against the {AXIS_LABELS.get(sweep, sweep)}; "
             f"error bars: {100 * cfg.report.bootstrap.confidence:.0f}% bootstrap intervals")  # fmt: skip
    _save(fig, out, provenance(name, cfg, {m.get("config_hash", "") for m in metrics}, about))


def _usage(runs: Path, cell: spec.Cell) -> tuple[dict[int, np.ndarray], str]:
    """Expert counts per MoAE block of one cell, summed over its folds."""
    total: dict[int, np.ndarray] = {}
    digest = ""
    for pred in layout.predictions_for(runs, cell.run, cell.train, cell.test):
        path = layout.sidecar_path(pred, layout.EXPERT_USAGE)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: expert usage missing (written by `unilearn evaluate`)"
            )
        data = json.loads(path.read_text())
        digest = data.get("config_hash") or digest
        for block, counts in data["layers"].items():
            total[int(block)] = total.get(int(block), 0) + np.asarray(counts, dtype=np.float64)
    if not total:
        raise ValueError(f"run {cell.run} on {cell.test}: no MoAE layers in its expert usage")
    return total, digest


def expert_usage_figure(cfg, runs: Path, out: Path) -> None:
    """Figure 4a: for each MoAE layer, the share of tokens each expert receives, per dataset."""
    cells = spec.figure_cells("figure4a", cfg)
    usage = [(_label(c), *_usage(runs, c)) for c in cells]
    blocks = sorted(usage[0][1])
    n_experts = len(usage[0][1][blocks[0]])
    plt = _pyplot()
    # a grid of MoAE layers (3 across), one legend for all below it, outside the bars
    cols = min(3, len(blocks))
    rows = -(-len(blocks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.6, 2.1 * rows + 0.7), dpi=150,
                             sharex=True, sharey=True, squeeze=False)  # fmt: skip
    width = 0.8 / len(usage)
    for ax, block in zip(axes.flat, blocks):
        for i, (label, counts, _) in enumerate(usage):
            share = counts[block] / max(counts[block].sum(), 1)
            ax.bar(
                np.arange(n_experts) + (i - (len(usage) - 1) / 2) * width, share, width, label=label
            )
        ax.text(0.03, 0.95, f"block {block}", transform=ax.transAxes, ha="left", va="top",
                fontsize=8)  # fmt: skip
        ax.set_xticks(range(n_experts), [str(e) for e in range(n_experts)])
        ax.axhline(1 / n_experts, color="0.5", lw=0.8, ls=":")
        ax.margins(y=0.25)
    for ax in axes.flat[len(blocks) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("expert")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of tokens")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.07 if rows > 1 else 0.11, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7,
               frameon=False)  # fmt: skip
    about = "UniLearn: share of tokens routed to each expert, per MoAE layer and test dataset"
    _save(fig, out, provenance("figure4a", cfg, {d for *_, d in usage}, about))


def _label(cell: spec.Cell) -> str:
    name = DATASETS[cell.test].title
    return name if cell.test == cell.train else f"{name} (model of {DATASETS[cell.train].title})"


def _centres(runs: Path, cell: spec.Cell):
    import pandas as pd

    (pred,) = layout.predictions_for(runs, cell.run, cell.train, cell.test)
    path = layout.sidecar_path(pred, layout.CENTRES)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class centres missing (written by `unilearn evaluate`)")
    return pd.read_parquet(path)


def centre_similarity_figure(cfg, runs: Path, out: Path) -> None:
    """Figure 4b: cosine similarity between class centres of a DFER and the SFER test set."""
    from unilearn.catalogue import canonical_emotion

    dfer_cell, sfer_cell = spec.figure_cells("figure4b", cfg)
    dfer, sfer = _centres(runs, dfer_cell), _centres(runs, sfer_cell)
    dfer = dfer[dfer["n"] > 0]
    sfer = sfer[sfer["n"] > 0]
    # SFER columns in the DFER rows' emotion order, so the diagonal pairs the same emotion.
    order = {canonical_emotion(n): i for i, n in enumerate(dfer["class_name"])}
    sfer = sfer.assign(_o=[order.get(canonical_emotion(n), len(order)) for n in sfer["class_name"]])
    sfer = sfer.sort_values(["_o", "class_id"], kind="stable")
    a = np.stack(dfer["centre"].map(np.asarray).to_list())
    b = np.stack(sfer["centre"].map(np.asarray).to_list())
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    sim = a @ b.T
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=150)
    image = ax.imshow(sim, cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
    for i in range(sim.shape[0]):
        for j in range(sim.shape[1]):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if sim[i, j] < 0.6 else "black")  # fmt: skip
    # one spelling per class across datasets (DFEW "angry", AffectNet "anger" -> "angry")
    ax.set_yticks(range(len(dfer)), [canonical_emotion(n) for n in dfer["class_name"]])
    ax.set_xticks(range(len(sfer)), [canonical_emotion(n) for n in sfer["class_name"]],
                  rotation=45, ha="right")  # fmt: skip
    ax.set_ylabel(f"{DATASETS[dfer_cell.test].title} (DFER) class centre")
    ax.set_xlabel(f"{DATASETS[sfer_cell.test].title} (SFER) class centre")
    fig.colorbar(image, ax=ax, fraction=0.046)
    hashes = set(dfer.get("config_hash", [])) | set(sfer.get("config_hash", []))
    fig.tight_layout()
    about = "UniLearn: cosine similarity of class-centre features, DFER vs SFER test set"
    _save(fig, out, provenance("figure4b", cfg, {str(h) for h in hashes}, about))


def pdf_path(out: Path) -> Path:
    return out.with_suffix(".pdf")


def sidecar_path(out: Path) -> Path:
    return out.with_suffix(".json")


def _save(fig, out: Path, about: dict[str, Any]) -> None:
    """PNG at `out`, vector PDF beside, provenance in both files' metadata and in `FIGURE.json`."""
    from unilearn.atomic import atomic_path, write_text

    text = (f"config {about['config']}; git {about['git_sha']}; config hash "
            f"{', '.join(h[:12] for h in about['config_hashes']) or '-'}")  # fmt: skip
    png = {"Title": about["description"], "Description": text, "Software": "unilearn"}
    pdf = {"Title": about["description"], "Subject": text, "Creator": "unilearn",
           "Keywords": about["figure"]}  # fmt: skip
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", metadata=png)
    with atomic_path(pdf_path(out)) as tmp:
        fig.savefig(tmp, format="pdf", metadata=pdf)
    write_text(sidecar_path(out), json.dumps(about, indent=2) + "\n")
    _pyplot().close(fig)


def main(args: argparse.Namespace) -> int:
    from unilearn.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.figure in spec.FIGURE_SWEEPS:
        sweep_figure(args.figure, cfg, args.runs, args.out)
    elif args.figure == "figure4a":
        expert_usage_figure(cfg, args.runs, args.out)
    else:
        centre_similarity_figure(cfg, args.runs, args.out)
    print(f"{args.figure} -> {args.out}, {pdf_path(args.out)}")
    return 0
