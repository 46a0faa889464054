"""The paper's experiment catalogue: one entry per row of Tables 1-5 (architecture, pre-training
mode, fine-tuning tasks, config overrides), and the short names of the Figure 3 sweeps.

Plain data (validated as `Experiment` rows by the schema). A config file's `experiments:` mapping
adds entries or replaces entries of the same name; it never removes one.
"""

from __future__ import annotations

from typing import Any

# Short sweep names (Figure 3) -> the config key they set; any other sweep name is a dotted key.
SWEEP_KEYS = {
    "n_experts": "model.moae.n_experts",
    "top_k": "model.moae.top_k",
    "sfer_proportion": "finetune.sfer_proportion",
    "moae_position": "model.moae.position",
}

# The paper's baselines and ablations, one entry per row of Tables 1-5. A config file's
# `experiments:` mapping adds entries or replaces entries of the same name; it never removes one.
# D = dual-modal (image+video) pre-training, M = MoAE, J = joint SFER+DFER fine-tuning (Table 5 left).
PAPER_EXPERIMENTS: dict[str, dict[str, Any]] = {
    "unilearn": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "description": "UniLearn (D+M+J); Tables 1-5, MoAE at the later half",
    },
    "videomae": {
        "arch": "vit",
        "pretrain": "video",
        "tasks": ["dfer"],
        "description": "VideoMAE baseline: ViT, video pre-training, DFER only (Table 1; Table 5 left: none)",
    },
    "vit": {
        "arch": "vit",
        "pretrain": "image+video",
        "tasks": ["dfer"],
        "description": "ViT, dual-modal pre-training, DFER only (Table 3; Table 5 left: D)",
    },
    "vit_mtl": {
        "arch": "vit",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "description": "ViT-MTL: two heads, no MoAE, joint (Table 3; Table 5 left: D+J)",
    },
    "vit_moe": {
        "arch": "vit_moe",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "description": "ViT-MoE: FFN experts instead of MoAE, joint (Table 3)",
    },
    "sfer_only": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["sfer"],
        "description": "SFER-only fine-tuning, evaluated on AffectNet-7 (Table 4)",
    },
    "dfer_only": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["dfer"],
        "description": "DFER-only fine-tuning (Table 4; Table 5 left: D+M)",
    },
    "videomae_moae": {
        "arch": "unilearn",
        "pretrain": "video",
        "tasks": ["dfer"],
        "description": "video pre-training + MoAE, DFER only (Table 5 left: M)",
    },
    "videomae_joint": {
        "arch": "vit",
        "pretrain": "video",
        "tasks": ["sfer", "dfer"],
        "description": "video pre-training, no MoAE, joint (Table 5 left: J)",
    },
    "pretrain_none": {
        "arch": "unilearn",
        "pretrain": "none",
        "tasks": ["sfer", "dfer"],
        "description": "UniLearn without pre-training (Table 2)",
    },
    "pretrain_image": {
        "arch": "unilearn",
        "pretrain": "image",
        "tasks": ["sfer", "dfer"],
        "description": "UniLearn, image-only pre-training (Table 2)",
    },
    "pretrain_video": {
        "arch": "unilearn",
        "pretrain": "video",
        "tasks": ["sfer", "dfer"],
        "description": "UniLearn, video-only pre-training (Table 2; Table 5 left: M+J)",
    },
    "pretrain_video_video": {
        "arch": "unilearn",
        "pretrain": "video+video",
        "tasks": ["sfer", "dfer"],
        "description": "UniLearn, VoxCeleb2 frames as the image modality (Table 2)",
    },
    "moae_early": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "overrides": {"model.moae.position": "early"},
        "description": "MoAE in the early half (Table 5 right)",
    },
    "moae_middle": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "overrides": {"model.moae.position": "middle"},
        "description": "MoAE in the middle blocks (Table 5 right)",
    },
    "moae_alternate": {
        "arch": "unilearn",
        "pretrain": "image+video",
        "tasks": ["sfer", "dfer"],
        "overrides": {"model.moae.position": "alternate"},
        "description": "MoAE in alternate blocks (Table 5 right)",
    },
}
