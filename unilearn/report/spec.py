"""What each table and figure of the paper is made of: rows (experiments of the config), the
datasets they are tested on, and so which metrics files the workflow must produce for it; and the
paper's published numbers of each row (UniLearn, arXiv 2409.06154), in percent.

Tables 2-5 and the figures use one reference DFER dataset: FERV39K as in the paper, or the
first DFER dataset of the config when FERV39K is not among them.
"""

from __future__ import annotations

from dataclasses import dataclass

from unilearn.layout import SFER_TEST
from unilearn.report.runs import sweep_runs
from unilearn.report.seeds import seed_cells

TABLES = ("table1", "table2", "table3", "table4", "table5")
FIGURES = ("figure3a", "figure3b", "figure4a", "figure4b")
FIGURE_SWEEPS = {"figure3a": "n_experts", "figure3b": "sfer_proportion"}


@dataclass(frozen=True)
class Cell:
    """One number pair (UAR, WAR): `run` fine-tuned on `train`, tested on `test`."""

    run: str
    train: str
    test: str


@dataclass(frozen=True)
class Row:
    label: str  # as in the paper (also the key of its published numbers)
    experiment: str | None  # None: the chance row, computed from the test set
    cells: tuple[Cell, ...]
    part: str = ""  # Table 5: "components" or "position"


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[Row, ...]
    datasets: tuple[str, ...]  # test-set columns, in order


def reference_dataset(cfg) -> str:
    dfer = list(cfg.data.dfer_datasets)
    if not dfer:
        raise ValueError("data.dfer_datasets is empty: no DFER dataset to report on")
    return "ferv39k" if "ferv39k" in dfer else dfer[0]


def _row(label: str, experiment: str, cells: list[tuple[str, str]], part: str = "") -> Row:
    return Row(label, experiment, tuple(Cell(experiment, t, s) for t, s in cells), part)


# Tables 2 and 3: (row label, experiment) on the reference dataset.
_ON_REFERENCE = {
    "table2": (
        "Table 2: pre-training data",
        [("none", "pretrain_none"), ("image", "pretrain_image"), ("video", "pretrain_video"),
         ("image+video", "unilearn"), ("video+video", "pretrain_video_video")],
    ),
    "table3": (
        "Table 3: architectures",
        [("ViT", "vit"), ("ViT-MTL", "vit_mtl"), ("UniLearn", "unilearn"), ("ViT-MoE", "vit_moe")],
    ),
}  # fmt: skip


def table_spec(name: str, cfg) -> TableSpec:
    ref = reference_dataset(cfg)
    on_ref = [(ref, ref)]
    if name == "table1":
        dfer = tuple(cfg.data.dfer_datasets)
        cells = [(d, d) for d in dfer]
        rows = (
            Row("chance", None, tuple(Cell("unilearn", d, d) for d in dfer)),
            _row("VideoMAE", "videomae", cells),
            _row("UniLearn", "unilearn", cells),
        )
        return TableSpec(name, "Table 1: UniLearn vs the VideoMAE baseline", rows, dfer)
    if name in _ON_REFERENCE:  # one row per experiment, on the reference dataset
        title, rows = _ON_REFERENCE[name]
        rows = tuple(_row(label, exp, on_ref) for label, exp in rows)
        return TableSpec(name, f"{title} ({ref})", rows, (ref,))
    if name == "table4":
        rows = (
            _row("SFER-only", "sfer_only", [(SFER_TEST, SFER_TEST)]),
            _row("DFER-only", "dfer_only", on_ref),
            _row("Joint (UniLearn)", "unilearn", [(ref, ref), (ref, SFER_TEST)]),
        )
        return TableSpec(name, "Table 4: single-task vs joint fine-tuning", rows, (ref, SFER_TEST))
    if name == "table5":
        components = [
            ("none", "videomae"),
            ("D", "vit"),
            ("M", "videomae_moae"),
            ("J", "videomae_joint"),
            ("D+M", "dfer_only"),
            ("D+J", "vit_mtl"),
            ("M+J", "pretrain_video"),
            ("D+M+J", "unilearn"),
        ]
        positions = [
            ("early", "moae_early"),
            ("middle", "moae_middle"),
            ("later", "unilearn"),
            ("alternate", "moae_alternate"),
        ]
        rows = tuple(_row(label, exp, on_ref, "components") for label, exp in components) + tuple(
            _row(label, exp, on_ref, "position") for label, exp in positions
        )
        title = (
            f"Table 5: components (D dual-modal pre-training, M MoAE, J joint fine-tuning) "
            f"and MoAE position ({ref})"
        )
        return TableSpec(name, title, rows, (ref,))
    raise ValueError(f"unknown table {name!r}; expected one of {list(TABLES)}")


def figure_cells(name: str, cfg) -> list[Cell]:
    """The metrics a figure plots (3a/3b); 4a/4b read prediction sidecars of these cells."""
    ref = reference_dataset(cfg)
    if name in FIGURE_SWEEPS:
        return [Cell(run.name, ref, ref) for run in sweep_runs(cfg, FIGURE_SWEEPS[name])]
    if name == "figure4a":  # expert usage of UniLearn on every dataset
        return [Cell("unilearn", d, d) for d in cfg.data.dfer_datasets] + [
            Cell("unilearn", ref, SFER_TEST)
        ]
    if name == "figure4b":  # class centres of one joint model on its DFER and the SFER test set
        return [Cell("unilearn", ref, ref), Cell("unilearn", ref, SFER_TEST)]
    raise ValueError(f"unknown figure {name!r}; expected one of {list(FIGURES)}")


def required_cells(target: str, cfg) -> list[Cell]:
    """Every metrics file a table or figure needs (the workflow's DAG starts here): a table's
    cells once per seed (`seeds.seed_cells`), a figure's with the config's `seed`."""
    if target in TABLES:
        cells = seed_cells(cfg, [c for row in table_spec(target, cfg).rows for c in row.cells])
    else:
        cells = figure_cells(target, cfg)
    return list(dict.fromkeys(cells))


# -- the paper's published numbers --------------------------------------------------------------
# Keyed by (table, row label, dataset) -> (UAR, WAR); Table 3's parameter counts in millions.
# The tables stage prints ours beside these and the gap. Table 5 (left) publishes four of its
# eight component rows (the baseline fine-tuned from MAE-DFER's VoxCeleb2 weights, +D.P.,
# +D.P.+MoAE, all three); the other four are ours only.

PAPER: dict[tuple[str, str, str], tuple[float, float]] = {
    # Table 1: UniLearn vs the VideoMAE baseline (ViT-B/16).
    ("table1", "VideoMAE", "dfew"): (63.60, 74.60),
    ("table1", "VideoMAE", "ferv39k"): (43.33, 52.39),
    ("table1", "VideoMAE", "mafw"): (40.87, 53.51),
    ("table1", "UniLearn", "dfew"): (66.80, 76.68),
    ("table1", "UniLearn", "ferv39k"): (43.41, 53.65),
    ("table1", "UniLearn", "mafw"): (43.72, 58.44),
    # Table 2: FERV39K by pre-training data.
    ("table2", "none", "ferv39k"): (27.67, 39.56),
    ("table2", "image", "ferv39k"): (36.10, 47.59),
    ("table2", "video", "ferv39k"): (42.92, 52.58),
    ("table2", "image+video", "ferv39k"): (43.41, 53.65),
    ("table2", "video+video", "ferv39k"): (42.36, 52.94),
    # Table 3: architectures on FERV39K.
    ("table3", "ViT", "ferv39k"): (42.68, 53.08),
    ("table3", "ViT-MTL", "ferv39k"): (42.63, 52.96),
    ("table3", "UniLearn", "ferv39k"): (43.41, 53.65),
    ("table3", "ViT-MoE", "ferv39k"): (41.79, 52.81),
    # Table 4: single-task vs joint fine-tuning.
    ("table4", "SFER-only", "affectnet7"): (65.58, 65.64),
    ("table4", "DFER-only", "ferv39k"): (42.45, 52.82),
    ("table4", "Joint (UniLearn)", "ferv39k"): (43.41, 53.65),
    ("table4", "Joint (UniLearn)", "affectnet7"): (65.45, 65.50),
    # Table 5 (left): components (D = dual-modal pre-training, M = MoAE, J = joint fine-tuning).
    ("table5", "none", "ferv39k"): (42.58, 52.34),
    ("table5", "D", "ferv39k"): (42.68, 53.08),
    ("table5", "D+M", "ferv39k"): (42.45, 52.82),
    ("table5", "D+M+J", "ferv39k"): (43.41, 53.65),
    # Table 5 (right): position of the MoAE layers, FERV39K.
    ("table5", "early", "ferv39k"): (43.15, 53.46),
    ("table5", "middle", "ferv39k"): (43.32, 53.57),
    ("table5", "later", "ferv39k"): (43.41, 53.65),
    ("table5", "alternate", "ferv39k"): (43.27, 53.52),
}

# Table 3: parameters in millions, (test = active for one token, train = all).
PAPER_PARAMS_M: dict[str, tuple[float, float]] = {
    "ViT": (86.0, 86.0),
    "UniLearn": (90.0, 101.0),
    "ViT-MoE": (115.0, 285.0),
}


def paper_numbers(table: str, row: str, dataset: str) -> tuple[float, float] | None:
    """(UAR, WAR) in percent as published, or None where the paper has no number."""
    return PAPER.get((table, row, dataset))
