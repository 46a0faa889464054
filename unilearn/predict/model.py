"""The model `unilearn predict` runs and everything it needs to reproduce test-time inputs:
heads and their class names, clip length, input size, temporal stride, normalisation and the
preprocessing settings of the clip store the model was trained on.

Our checkpoints carry all of it in `meta` (docs/ARCHITECTURE.md). Preprocessing settings come
from `meta["preprocess"]` (the store's `settings.json`) when the checkpoint records them; otherwise
from documented defaults: short side = round(1.1 x input size) (176 for 160, the paper's store),
JPEG quality 90 (the store's default), detector and face crop as `unilearn preprocess`. Imported
VideoMAE / MAE-DFER checkpoints and the UniLearn authors' fine-tuned `checkpoint-best.pth`
(MSA-LMC/S4D) carry no meta: the user names the model and the label set (the authors' expert count,
MoAE blocks and head sizes are read from their weights; their image head is AffectNet-7's), and
frames are resized to the input size (VideoMAE's test-time short side) without a JPEG round trip.
Command-line flags override any of these.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD, LABEL_SETS, get_label_set
from unilearn.data.face import FaceCropConfig
from unilearn.data.face_clip import SETTINGS_BEFORE_KEYS, PreprocessSettings, recorded_settings
from unilearn.models.checkpoint import (
    CheckpointError,
    authors_model_kwargs,
    is_authors_layout,
    load_pretrained,
    model_from_checkpoint,
    read_checkpoint,
    rebuild_model,
    split_checkpoint,
)

DEFAULT_FRAME_STRIDE = 4  # the paper's temporal stride (16 frames x 4)
SHORT_SIDE_RATIO = 1.1  # 176-pixel store for 160-pixel crops


@dataclass
class InferenceModel:
    """A model in eval mode and the facts inference needs about it."""

    model: nn.Module
    model_name: str
    labels: dict[str, list[str]]  # head ("dfer", "sfer") -> class names, in logit order
    num_frames: int
    input_size: int
    frame_stride: int
    settings: PreprocessSettings
    settings_source: str  # where `settings` came from (for the summary)
    checkpoint: str
    checkpoint_sha256: str
    config_hash: str | None = None
    mean: tuple[float, ...] = tuple(IMAGENET_MEAN)
    std: tuple[float, ...] = tuple(IMAGENET_STD)
    imported: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def tubelet_size(self) -> int:
        return int(getattr(self.model, "tubelet_size", 2))

    def has_head(self, head: str) -> bool:
        return bool(self.labels.get(head))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_from_meta(value: Any, where: str) -> PreprocessSettings:
    """`meta["preprocess"]` (the store's settings.json as a dict) -> `PreprocessSettings`."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: meta.preprocess is a {type(value).__name__}, not a dict")
    known = {f.name for f in fields(PreprocessSettings)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise CheckpointError(f"{where}: meta.preprocess has unknown keys {unknown}; known: {sorted(known)}")  # fmt: skip
    face = value.get("face") or {}
    face_known = {f.name for f in fields(FaceCropConfig)}
    if not isinstance(face, dict) or set(face) - face_known:
        raise CheckpointError(f"{where}: meta.preprocess.face must be a dict with keys from {sorted(face_known)}")  # fmt: skip
    value = recorded_settings(value)  # a record made before a key existed
    return PreprocessSettings(**{**value, "face": FaceCropConfig(**value["face"])})


def parse_labels(spec: str) -> list[str]:
    """`--labels`: a label set name (`dfew`, `mafw`, ...) or comma-separated class names."""
    if spec in LABEL_SETS:
        return list(get_label_set(spec).classes)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) < 2:
        raise ValueError(
            f"--labels {spec!r}: expected a label set ({', '.join(sorted(LABEL_SETS))}) or at "
            "least two comma-separated class names"
        )
    return names


def load_inference_model(
    checkpoint: str | os.PathLike,
    *,
    model_name: str | None = None,
    labels: str | None = None,
    frame_stride: int | None = None,
    overrides: dict[str, Any] | None = None,
    face_overrides: dict[str, Any] | None = None,
) -> InferenceModel:
    """Our checkpoint (everything from its meta), or an imported VideoMAE / MAE-DFER fine-tuned
    checkpoint when `model_name` and `labels` are given. `overrides` replace preprocessing
    settings (`short_side`, `jpeg_quality`, `detector`); `face_overrides` the face crop config
    (`detect_stride`, `scale`, ...). Raises `CheckpointError` naming the file and the problem."""
    path = Path(checkpoint)
    _, meta = split_checkpoint(read_checkpoint(path), path)
    ours = bool(meta and meta.get("model_name"))
    if ours:
        if (model_name and model_name != meta["model_name"]) or labels:
            raise CheckpointError(
                f"{path}: a unilearn checkpoint of {meta['model_name']} with its own label names; "
                "--model/--labels are for imported VideoMAE / MAE-DFER checkpoints only"
            )
        spec = _ours(path, meta)
    else:
        if not model_name or not labels:
            raise CheckpointError(
                f"{path}: no unilearn meta (a VideoMAE / MAE-DFER checkpoint?): name the model "
                "and its classes, e.g. --model vit_base_patch16_160 --labels dfew"
            )
        spec = _imported(path, model_name, parse_labels(labels))
    if frame_stride is not None:
        spec.frame_stride = int(frame_stride)
    changed = {k: v for k, v in (overrides or {}).items() if v is not None}
    face_changed = {k: v for k, v in (face_overrides or {}).items() if v is not None}
    if face_changed:
        changed["face"] = replace(spec.settings.face, **face_changed)
    if changed:
        spec.settings = replace(spec.settings, **changed)
        spec.settings_source += " + command line"
    elif spec.settings_source.startswith("defaults"):
        spec.notes.append(
            "the checkpoint does not record its store's preprocessing: pass --short-side / "
            "--jpeg-quality to match the store the model was trained on"
        )
    if spec.settings.short_side < spec.input_size:
        raise ValueError(
            f"short side {spec.settings.short_side} is smaller than the model's input size "
            f"{spec.input_size}: clips would be upscaled; pass --short-side >= {spec.input_size}"
        )
    return spec


def _ours(path: Path, meta: dict[str, Any]) -> InferenceModel:
    model, meta = model_from_checkpoint(path)
    labels = {h: list(v) for h, v in (meta.get("labels") or {}).items() if v}
    if not labels:
        raise CheckpointError(f"{path}: meta.labels is empty: not a fine-tuned checkpoint")
    input_size = int(meta["input_size"])
    if "preprocess" in meta and meta["preprocess"] is not None:
        settings = settings_from_meta(meta["preprocess"], str(path))
        source = "checkpoint meta"
    else:
        settings = PreprocessSettings(
            short_side=round(SHORT_SIDE_RATIO * input_size), **SETTINGS_BEFORE_KEYS
        )
        source = "defaults: the checkpoint does not record its store's settings"
    return InferenceModel(
        model=model,
        model_name=meta["model_name"],
        labels=labels,
        num_frames=int(meta["num_frames"]),
        input_size=input_size,
        frame_stride=int(meta.get("frame_stride") or DEFAULT_FRAME_STRIDE),
        settings=settings,
        settings_source=source,
        checkpoint=str(path),
        checkpoint_sha256=file_sha256(path),
        config_hash=meta.get("config_hash"),
        mean=tuple(meta.get("mean") or IMAGENET_MEAN),
        std=tuple(meta.get("std") or IMAGENET_STD),
    )


def imported_model(
    path: str | os.PathLike, model_name: str, classes: list[str]
) -> tuple[nn.Module, dict[str, list[str]]]:
    """An imported fine-tuned checkpoint (VideoMAE / MAE-DFER, or the authors') loaded completely
    into `model_name` with `classes` for its DFER head: `(model.eval(), labels per head)`.
    Every key of the model must load (`load_pretrained(complete=True)`), else `CheckpointError`
    names the keys and the likely cause."""
    from unilearn.models.registry import model_arch

    path = Path(path)
    if model_name.startswith("mae_"):
        raise CheckpointError(
            f"--model {model_name} is a pre-training model; predict needs a fine-tuned one "
            "(vit_*, unilearn_*, vit_moe_*)"
        )
    state_dict, _ = split_checkpoint(read_checkpoint(path), path)
    kwargs: dict[str, Any] = {"num_classes": len(classes)}
    labels = {"dfer": classes}
    if is_authors_layout(state_dict):
        found = authors_model_kwargs(state_dict)
        if found.get("num_classes", len(classes)) != len(classes):
            raise CheckpointError(
                f"{path}: its video head has {found['num_classes']} classes, but --labels "
                f"names {len(classes)}"
            )
        if "n_experts" in found and model_arch(model_name) != "unilearn":
            raise CheckpointError(
                f"{path}: cannot run as {model_name} with {len(classes)} classes: the authors' "
                f"checkpoint has MoAE layers (blocks {found['moae_position']}); use a unilearn_* "
                "model"
            )
        kwargs.update(found)
        if found.get("num_classes_sfer") == len(get_label_set("affectnet7").classes):
            labels["sfer"] = list(get_label_set("affectnet7").classes)  # the authors' SFER set
    model = rebuild_model(model_name, kwargs, path)
    try:
        load_pretrained(model, path, complete=True)
    except CheckpointError as err:
        report = str(err)
        why = (
            "its head has another class count"
            if "class count differs" in report
            else "it has no classification head (a pre-training checkpoint?)"
            if "head." in report and "NOT LOADED" not in report
            else "keys of the model are not in the checkpoint, or the reverse"
        )
        raise CheckpointError(
            f"{path}: cannot run as {model_name} with {len(classes)} classes: {why}\n{report}"
        ) from None
    return model.eval(), labels


def evaluation_model(
    path: str | os.PathLike, model_name: str | None = None, labels: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """What `unilearn evaluate` runs: our checkpoint rebuilt from its meta, or, with
    `model_name`, an imported one (`imported_model`; `labels` a label set or class names) with
    a meta of the same shape (labels, num_frames, input_size; no frame_stride, experiment or
    config_hash)."""
    if model_name is None:
        if labels is not None:
            raise CheckpointError(f"{path}: --labels needs --model (for imported checkpoints)")
        return model_from_checkpoint(path)
    if labels is None:
        raise CheckpointError(f"{path}: --model needs --labels (the DFER head's classes)")
    model, heads = imported_model(path, model_name, parse_labels(labels))
    meta = {"model_name": model_name, "labels": heads, "num_frames": int(model.num_frames),
            "input_size": int(model.img_size), "imported": True}  # fmt: skip
    return model, meta


def _imported(path: Path, model_name: str, classes: list[str]) -> InferenceModel:
    model, labels = imported_model(path, model_name, classes)
    notes = [f"imported checkpoint loaded into {model_name}"]
    # every frame, framed ours, resized to the input (no JPEG round trip)
    settings = PreprocessSettings(
        short_side=model.img_size, frame_stride=1, framing="default", codec="jpeg", jpeg_quality=0
    )
    return InferenceModel(
        model=model,
        model_name=model_name,
        labels=labels,
        num_frames=int(model.num_frames),
        input_size=int(model.img_size),
        frame_stride=DEFAULT_FRAME_STRIDE,
        settings=settings,
        settings_source="imported-checkpoint defaults (short side = input size, no JPEG)",
        checkpoint=str(path),
        checkpoint_sha256=file_sha256(path),
        imported=True,
        notes=notes,
    )
