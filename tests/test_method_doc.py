"""docs/method.md cannot drift from the config: every `key: value` in its "ours" column is what
`unilearn config` resolves for configs/paper.yaml, for the stage of that table.

A table's section decides the stage and where a relative key lives: a key of the fine-tuning table
is under `finetune` unless it starts with a top-level section (`model.drop_path`,
`evaluate.n_clips`, `effective.lr`); likewise `pretrain` for the pre-training table; keys of the
model table are absolute. Rows whose behaviour is code, not a setting, say so with "(code)".
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
PAPER = ROOT / "configs" / "paper.yaml"

# Section heading prefix -> (the `unilearn config` call, the section a relative key lives in).
STAGES = {
    "Fine-tuning": (["--stage", "finetune", "--experiment", "unilearn", "--dataset", "dfew",
                     "--fold", "1"], "finetune"),
    "Pre-training": (["--stage", "pretrain", "--mode", "image+video"], "pretrain"),
    "The model": (["--stage", "finetune", "--experiment", "unilearn", "--dataset", "dfew",
                   "--fold", "1"], None),
}  # fmt: skip
CODE_SPAN = re.compile(r"`([^`]+)`")
SETTING = re.compile(r"^([A-Za-z_][\w.]*):\s+(.+)$")


def method_tables() -> list[tuple[str, str, str]]:
    """(section, row name, "ours" cell) of every row of every table under a known section."""
    rows, section, ours = [], None, None
    for line in METHOD.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:]
            section = next((s for s in STAGES if heading.startswith(s)), None)
            ours = None
        elif section and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if ours is None:
                ours = next(i for i, c in enumerate(cells) if c.startswith("ours"))
            elif not set(cells[0]) <= set("-: "):
                rows.append((section, cells[0], cells[ours]))
    return rows


def settings_of(cell: str) -> list[tuple[str, object]]:
    """The `key: value` code spans of a cell, values read as YAML."""
    found = []
    for span in CODE_SPAN.findall(cell):
        m = SETTING.match(span)
        if m:
            value = yaml.safe_load(m.group(2))
            if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as text
                try:
                    value = float(value)
                except ValueError:
                    pass
            found.append((m.group(1), value))
    return found


@pytest.fixture(scope="module")
def resolved() -> dict[str, dict]:
    out = {}
    for section, (args, _) in STAGES.items():
        proc = subprocess.run(
            [sys.executable, "-m", "unilearn", "config", "--config", str(PAPER), *args],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        out[section] = json.loads(proc.stdout)
    return out


def lookup(config: dict, key: str, relative_to: str | None):
    first = key.split(".")[0]
    path = key if relative_to is None or first in config else f"{relative_to}.{key}"
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return path, node


def agrees(doc, actual) -> bool:
    """The doc's value equals the config's; a mapping in the doc need only be part of it."""
    if isinstance(doc, dict):
        return isinstance(actual, dict) and all(
            k in actual and agrees(v, actual[k]) for k, v in doc.items()
        )
    if isinstance(doc, list | tuple):
        return isinstance(actual, list | tuple) and len(doc) == len(actual) and all(
            agrees(a, b) for a, b in zip(doc, actual, strict=True)
        )  # fmt: skip
    if isinstance(doc, bool) or isinstance(actual, bool) or doc is None or actual is None:
        return doc == actual
    if isinstance(doc, int | float) and isinstance(actual, int | float):
        return math.isclose(doc, actual, rel_tol=1e-9, abs_tol=0.0)
    return str(doc) == str(actual)


def test_method_doc_has_every_stage_table():
    sections = {section for section, _, _ in method_tables()}
    assert sections == set(STAGES)


def test_method_doc_ours_column_matches_unilearn_config(resolved):
    problems, checked = [], 0
    for section, row, cell in method_tables():
        settings = settings_of(cell)
        if not settings and "(code)" not in cell:
            problems.append(f"{section} / {row}: no `key: value` and not marked (code): {cell!r}")
        for key, value in settings:
            relative_to = STAGES[section][1]
            try:
                path, actual = lookup(resolved[section], key, relative_to)
            except KeyError as e:
                problems.append(f"{section} / {row}: `{key}` names {e}, not in unilearn config")
                continue
            checked += 1
            if not agrees(value, actual):
                problems.append(
                    f"{section} / {row}: doc `{key}: {value}`, config {path} = {actual}"
                )
    assert not problems, "docs/method.md disagrees with `unilearn config`:\n" + "\n".join(problems)
    assert checked >= 30


def test_method_doc_check_catches_a_wrong_value(resolved):
    # The check itself can fail: a value the config does not hold is caught.
    _, actual = lookup(resolved["Fine-tuning"], "layer_decay", "finetune")
    assert agrees(actual, actual) and not agrees(actual + 0.05, actual)
    assert not agrees({"ferv39k": {"frame_stride": 4}}, {"ferv39k": {"frame_stride": 1}})
    with pytest.raises(KeyError):
        lookup(resolved["Fine-tuning"], "layer_decy", "finetune")
