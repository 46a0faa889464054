"""Checkpoint I/O for models: read ours, VideoMAE / MAE-DFER checkpoints (pre-train or
fine-tune) and the UniLearn authors' (MSA-LMC/S4D: their pre-training trainer's `checkpoint.pt`
and their fine-tuned `checkpoint-best.pth`) into any of our models with a clear report, save ours
atomically, and rebuild a model from a checkpoint's meta (what `unilearn predict` uses).

Our format: `{"model": state_dict, "meta": {...}, **training_state}` (docs/ARCHITECTURE.md).
Everything is read with `torch.load(..., weights_only=True)`; the only non-tensor class allowed
is `argparse.Namespace`, because VideoMAE and MAE-DFER store their `args` in every checkpoint.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unilearn.atomic import torch_save
from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import ConfigError, typed_kwargs
from unilearn.models.mae import MaskedAutoencoder

STATE_DICT_KEYS = ("model", "module", "state_dict", "model_state")  # where checkpoints keep weights
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")  # DDP, torch.compile, mmaction-style
MAE_ONLY = ("decoder.", "encoder_to_decoder.", "mask_token")
HEADS = ("head.", "head_sfer.")
# Keys that are new when a pre-trained encoder initialises a fine-tune model (VideoMAE also
# starts fc_norm and the head afresh); anything else missing means the backbone did not load.
_NEW_IN_FINETUNE = re.compile(r"(^|\.)(moae|gate)\.|\.mlp\.experts\.|^head(_sfer)?\.|^fc_norm\.")
_EXPERT_KEY = re.compile(r"^blocks\.(\d+)\.mlp\.experts\.\d+\.(fc[12]\.(?:weight|bias))$")
# Trained mixture weights (MoAE / MoE experts and their gates) and classification heads: a
# fine-tuned checkpoint that has them must fill every one of them in the model.
_TRAINED = re.compile(r"(^|\.)(moae|gate)\.|\.mlp\.experts\.|^head(_sfer)?\.")
_MIXTURE = re.compile(r"(^|\.)(moae|gate|moe_layer)\.|\.mlp\.experts\.")
# The authors' fine-tuned layout (finetune/s4d/videomae.py, VisionTransformerMoE with MoE type
# `moe_adapters`) -> ours: MoAE under `moe_layer`, router `topkroute_linear` / `noise_linear`,
# heads in a ModuleDict keyed by modality (`video` = DFER, `image` = SFER).
AUTHORS_KEYS = (
    (re.compile(r"^(blocks\.\d+)\.moe_layer\.router\.topkroute_linear\."), r"\1.moae.gate.w_gate."),
    (re.compile(r"^(blocks\.\d+)\.moe_layer\.router\.noise_linear\."), r"\1.moae.gate.w_noise."),
    (re.compile(r"^(blocks\.\d+)\.moe_layer\.experts\.(\d+)\.(fc[12])\."), r"\1.moae.experts.\2.\3."),
    (re.compile(r"^head\.video\."), "head."),
    (re.compile(r"^head\.image\."), "head_sfer."),
)  # fmt: skip
_AUTHORS_EXPERT = re.compile(r"^blocks\.(\d+)\.moe_layer\.experts\.(\d+)\.fc1\.weight$")
POS_EMBED_REASON = (
    "fixed sinusoidal position table: recomputed for this model's frames and resolution"
)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or one that does not fit the model."""


@dataclass
class LoadReport:
    """What `load_pretrained` did. `missing`/`unexpected` are torch's; `dropped` are checkpoint
    keys left out on purpose (key -> reason); `upcycled` are MoE experts copied from a dense FFN."""

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    upcycled: list[str] = field(default_factory=list)
    meta: dict[str, Any] | None = None
    layout: str = "unilearn"  # "unilearn" (ours / VideoMAE's keys) or "authors" (MSA-LMC/S4D)
    finetuned: bool = False  # a finished mixture model: the checkpoint holds experts / gates

    @property
    def missing_new(self) -> list[str]:
        """Missing keys that are new in this model (MoAE, gates, experts, heads, fc_norm)."""
        return [k for k in self.missing if _NEW_IN_FINETUNE.search(k)]

    @property
    def missing_backbone(self) -> list[str]:
        """Missing keys the checkpoint should have provided (should be empty)."""
        return [k for k in self.missing if not _NEW_IN_FINETUNE.search(k)]

    @property
    def missing_trained(self) -> list[str]:
        """Expert, gate and head keys of the model that a fine-tuned checkpoint did not fill
        (heads re-initialised on purpose for another class count are `dropped`, not here)."""
        if not self.finetuned:
            return []
        return [k for k in self.missing if _TRAINED.search(k) and k not in self.dropped]

    @property
    def ok(self) -> bool:
        return not self.missing_backbone and not self.unexpected and not self.missing_trained

    def __str__(self) -> str:
        lines = [f"loaded {self.path}"]

        def section(title: str, keys: list[str]) -> None:
            if keys:
                lines.append(f"  {title} ({len(keys)}): {_abbreviate(keys)}")

        section("NOT LOADED, backbone keys missing from the checkpoint", self.missing_backbone)
        section(
            "NOT LOADED, experts / gates / heads missing from this fine-tuned checkpoint",
            self.missing_trained,
        )
        section("unexpected keys in the checkpoint (ignored)", self.unexpected)
        trained = set(self.missing_trained)
        section(
            "new in this model, freshly initialised",
            [k for k in self.missing_new if k not in trained],
        )
        section("FFN experts upcycled from the dense FFN", self.upcycled)
        for reason in sorted(set(self.dropped.values())):
            keys = [k for k, r in self.dropped.items() if r == reason]
            section(f"dropped: {reason}", keys)
        return "\n".join(lines)


def _abbreviate(keys: list[str], limit: int = 12) -> str:
    # Collapse indices (12 blocks x 8 experts read as one pattern); past `limit` patterns, count
    # keys per top-level module instead.
    patterns = list(OrderedDict.fromkeys(re.sub(r"\.\d+(?=\.|$)", ".N", k) for k in keys))
    if len(patterns) <= limit:
        return ", ".join(patterns)
    groups: dict[str, int] = OrderedDict()
    for key in keys:
        top = key.split(".", 1)[0]
        groups[top] = groups.get(top, 0) + 1
    return ", ".join(f"{top}.* ({n} keys)" if n > 1 else top for top, n in groups.items())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# -- reading -------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors all mean "not a checkpoint we can read"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (torch.load with weights_only=True "
            f"failed: {detail})"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return dict(obj)


def split_checkpoint(
    obj: Mapping[str, Any], path: str | os.PathLike = "<checkpoint>"
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict, meta) of a loaded checkpoint: weights under `model`/`module`/`state_dict`
    or at the top level; DDP / compile / `backbone.` prefixes stripped."""
    state_dict = None
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), Mapping):
            state_dict = obj[key]
            break
    if state_dict is None:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state_dict = obj
        else:
            raise CheckpointError(
                f"{path}: no model weights: expected one of the keys {STATE_DICT_KEYS} or a bare "
                f"state dict; found keys {sorted(obj)[:10]}"
            )
    clean: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: weight {key!r} is a {type(value).__name__}, not a tensor"
            )
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        clean[key] = value
    if not clean:
        raise CheckpointError(f"{path}: the state dict is empty")
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else None
    return clean, (dict(meta) if meta is not None else None)


# -- conversion ----------------------------------------------------------------------------------
def is_authors_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a state dict of the authors' fine-tuned `VisionTransformerMoE` (MSA-LMC/S4D)."""
    return any(
        ".moe_layer." in k or k.startswith(("head.video.", "head.image.")) for k in state_dict
    )


def from_authors_layout(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' fine-tuned keys renamed to ours (`AUTHORS_KEYS`); every other key (patch
    embedding, blocks, FFN, fc_norm) is already VideoMAE's and ours."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in AUTHORS_KEYS:
            key, n = pattern.subn(replacement, key)
            if n:
                break
        out[key] = value
    return out


def authors_model_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What an authors' fine-tuned state dict tells about the model: `num_classes` (the video
    head), `num_classes_sfer` (the image head), and, when it has MoAE layers, `n_experts` and
    `moae_position` (their block indices), written as flat kwargs (`unilearn.config.typed_kwargs`
    reads them into `moae`). Top-k and capacity are not in the weights: the authors' scripts use
    k = 2 and capacity 1.0, which are our defaults."""
    kwargs: dict[str, Any] = {}
    if "head.video.weight" in state_dict:
        kwargs["num_classes"] = int(state_dict["head.video.weight"].shape[0])
    if "head.image.weight" in state_dict:
        kwargs["num_classes_sfer"] = int(state_dict["head.image.weight"].shape[0])
    experts: dict[int, set[int]] = {}
    for key in state_dict:
        match = _AUTHORS_EXPERT.match(key)
        if match:
            experts.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if experts:
        kwargs["moae_position"] = sorted(experts)
        kwargs["n_experts"] = max(len(e) for e in experts.values())
    return kwargs


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
    path: str | os.PathLike = "<checkpoint>",
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Convert a checkpoint's state dict to `model`'s keys (timm's `checkpoint_filter_fn`).

    Handles: the authors' fine-tuned layout (`moe_layer.*`, `head.video` / `head.image`,
    `from_authors_layout`); VideoMAE / MAE-DFER / the authors' / our pre-train dicts
    (`encoder.*`, decoder) into fine-tune models and back; the encoder's final `norm` (unused after mean pooling + fc_norm); stored
    position tables (ours is fixed and recomputed); heads whose class count differs; dense FFNs
    into ViT-MoE experts (upcycling). Other shape mismatches raise, naming the key.
    Returns (state dict for `model.load_state_dict(strict=False)`, dropped key -> reason, upcycled keys).
    """
    model = unwrap_model(model)
    target = model.state_dict()
    if is_authors_layout(state_dict):
        state_dict = from_authors_layout(state_dict)
    to_mae = isinstance(model, MaskedAutoencoder)
    source_is_pretrain = any(k.startswith("encoder.") for k in state_dict)
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in state_dict.items():
        if key.endswith("pos_embed"):
            dropped[key] = POS_EMBED_REASON
        elif to_mae and not source_is_pretrain:  # a fine-tune backbone initialising an MAE
            if key.startswith(HEADS) or key.startswith("fc_norm."):
                dropped[key] = "classification head / fc_norm: not part of an MAE"
            else:
                out["encoder." + key] = value
        elif not to_mae and key.startswith(MAE_ONLY):
            dropped[key] = "MAE decoder / mask token: not part of a fine-tune model"
        elif not to_mae and key.startswith("encoder."):
            out[key[len("encoder.") :]] = value
        else:
            out[key] = value
    if not to_mae:
        for key in ("norm.weight", "norm.bias"):
            if key in out and key not in target:
                del out[key]
                dropped[key if not source_is_pretrain else "encoder." + key] = (
                    "pre-train encoder's final LayerNorm: fine-tune models mean-pool and apply "
                    "fc_norm instead (as VideoMAE)"
                )

    upcycled = _upcycle_experts(out, target, dropped)

    for key in list(out):
        if key in target and out[key].shape != target[key].shape:
            if key.startswith(HEADS):
                dropped[key] = (
                    f"class count differs (checkpoint {tuple(out[key].shape)}, "
                    f"model {tuple(target[key].shape)}): head re-initialised"
                )
                del out[key]
            else:
                raise CheckpointError(
                    f"{path}: {key} has shape {tuple(out[key].shape)} in the checkpoint but "
                    f"{tuple(target[key].shape)} in the model (different width, depth, patch or "
                    "tubelet size, or expert count?)"
                )
    return out, dropped, upcycled


def _upcycle_experts(
    out: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor], dropped: dict[str, str]
) -> list[str]:
    """ViT-MoE from a dense checkpoint: every FFN expert of block N starts as block N's FFN."""
    upcycled = []
    used = set()
    for key in target:
        match = _EXPERT_KEY.match(key)
        if match is None or key in out:
            continue
        dense = f"blocks.{match.group(1)}.mlp.{match.group(2)}"
        if dense in out:
            out[key] = out[dense].clone()
            upcycled.append(key)
            used.add(dense)
    for dense in used:
        if dense not in target:
            del out[dense]
            dropped[dense] = "dense FFN copied into every FFN expert of its block (upcycling)"
    return upcycled


def _is_finetuned(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A finished mixture model: a checkpoint with trained experts or gates (ours, the authors').
    A dense checkpoint (pre-trained, or a fine-tuned ViT) may initialise new experts, gates or a
    second head (reported as new, or upcycled), as the authors initialise theirs."""
    return is_authors_layout(state_dict) or any(
        _MIXTURE.search(k) for k in state_dict if not k.startswith(("encoder.", "decoder."))
    )


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, strict: bool = False, complete: bool = False
) -> LoadReport:
    """Load our, VideoMAE's, MAE-DFER's or the authors' checkpoint (pre-train or fine-tune)
    into `model`.

    Returns a `LoadReport` (print it). Always raises `CheckpointError`, naming the keys, when a
    fine-tuned mixture checkpoint (ours or the authors', with experts and gates) leaves experts,
    gates or heads of the model unloaded, or brings
    expert / gate / head weights the model has no place for: a finished model is never left
    partly at initialisation. With `strict`, also when any backbone key is missing or any
    checkpoint key is unexpected. With `complete` (inference on an imported checkpoint), also
    when any key of the model is not loaded, a head re-initialised for another class count
    included.
    """
    state_dict, meta = split_checkpoint(read_checkpoint(path), path)
    filtered, dropped, upcycled = checkpoint_filter_fn(state_dict, model, path)
    result = unwrap_model(model).load_state_dict(filtered, strict=False)
    report = LoadReport(
        path=str(path),
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
        dropped=dropped,
        upcycled=upcycled,
        meta=meta,
        layout="authors" if is_authors_layout(state_dict) else "unilearn",
        finetuned=_is_finetuned(state_dict),
    )
    stray = [k for k in report.unexpected if _TRAINED.search(k) or ".moe_layer." in k]
    if report.finetuned and (report.missing_trained or stray):
        raise CheckpointError(
            f"{path}: this fine-tuned checkpoint does not fit the model (different expert "
            f"count, MoAE positions or heads?)\n{report}"
        )
    incomplete = complete and (report.missing or report.unexpected)
    if incomplete or (strict and not report.ok):
        raise CheckpointError(str(report))
    return report


# -- writing -------------------------------------------------------------------------------------
def default_meta(model: nn.Module) -> dict[str, Any]:
    """The meta fields a model knows about itself (the caller adds labels and config_hash)."""
    model = unwrap_model(model)
    return {
        "model_name": getattr(model, "model_name", None),
        "model_kwargs": dict(getattr(model, "model_kwargs", {})),
        "num_frames": getattr(model, "num_frames", None),
        "input_size": getattr(model, "img_size", None),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "labels": {},
        "config_hash": None,
    }


_SAFE_LEAVES = (
    torch.Tensor,
    str,
    int,
    float,
    bool,
    type(None),
    torch.dtype,
    torch.device,
    torch.Size,
)


def check_weights_only_safe(obj: Any, where: str) -> None:
    """Raise `TypeError` naming the path of any value `torch.load(weights_only=True)` refuses
    (numpy arrays and scalars, dataclasses, Namespaces...): found at save time, not at resume."""
    if isinstance(obj, _SAFE_LEAVES):
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; use str or int")
            check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which torch.load(..., "
        "weights_only=True) cannot read back; convert it to tensors / lists / numbers"
    )


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, meta: Mapping[str, Any] | None = None, **extra: Any
) -> None:
    """Write `{"model": state_dict, "meta": meta, **extra}` atomically (temp file + rename).

    `meta` is merged over `default_meta(model)`; `extra` is training state (optimizer, scaler,
    epoch, RNG states, sampler state). All of it must load with weights_only=True (checked here).
    """
    model = unwrap_model(model)
    full_meta = {**default_meta(model), **(meta or {})}
    if "model" in extra or "meta" in extra:
        raise ValueError("save_checkpoint: `model` and `meta` are reserved keys of the checkpoint")
    check_weights_only_safe(full_meta, "meta")
    for key, value in extra.items():
        check_weights_only_safe(value, key)
    torch_save({"model": model.state_dict(), "meta": full_meta, **extra}, path)


def rebuild_model(
    name: str, written: Mapping[str, Any], path: str | os.PathLike = "<checkpoint>"
) -> nn.Module:
    """`create_model(name, ...)` from model kwargs as a checkpoint writes them (`moae` as a
    dict) or as those written before it and the authors' weights tell them (the flat
    `n_experts`, `moae_position`, ...): `unilearn.config.typed_kwargs` reads both."""
    from unilearn.models.registry import create_model  # registry imports the model modules

    try:
        kwargs = typed_kwargs(written)
    except ConfigError as err:
        raise CheckpointError(f"{path}: model kwargs {dict(written)}: {err}") from None
    return create_model(name, **kwargs)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a unilearn checkpoint was saved from (`meta.model_name` and
    `meta.model_kwargs`: `moae` as a dict, or the flat `n_experts`, `moae_position`, ... of the
    checkpoints written before; `typed_kwargs` reads both), load its weights strictly, and
    return `(model.eval(), meta)`."""
    state_dict, meta = split_checkpoint(read_checkpoint(path), path)
    if not meta or not meta.get("model_name"):
        raise CheckpointError(
            f"{path}: no meta.model_name, so not a unilearn checkpoint; for VideoMAE / MAE-DFER "
            "checkpoints create the model yourself and call load_pretrained(model, path)"
        )
    model = rebuild_model(meta["model_name"], meta.get("model_kwargs") or {}, path)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit {meta['model_name']}: {err}") from err
    return model.eval(), meta
