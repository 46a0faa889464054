"""The models of UniLearn: the VideoMAE-compatible ViT, MoAE, the ViT-MoE baseline, the dual-modal
MAE, their registry and checkpoint I/O. See docs/models.md."""

from unilearn.models.checkpoint import (
    LoadReport,
    load_pretrained,
    model_from_checkpoint,
    save_checkpoint,
)
from unilearn.models.moae import eval_noise, expert_usage, reset_expert_usage
from unilearn.models.registry import create_model, list_models, model_name
from unilearn.models.routing import whole_groups

__all__ = [
    "LoadReport",
    "create_model",
    "eval_noise",
    "expert_usage",
    "list_models",
    "load_pretrained",
    "model_from_checkpoint",
    "model_name",
    "reset_expert_usage",
    "save_checkpoint",
    "whole_groups",
]
