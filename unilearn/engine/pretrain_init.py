"""Published weights as a pre-training: which checkpoint a pre-training mode's fine-tunings start
from (`pretrain.init`: mode -> file, e.g. the authors' dual-modal ViT-B for image+video, or
MAE-DFER's VoxCeleb2 weights for video). Torch-free: the workflow calls it at parse time.
"""

from __future__ import annotations

from pathlib import Path


def init_checkpoint(cfg, mode: str) -> Path | None:
    """The published checkpoint configured for `mode` (`pretrain.init[mode]`), or None when the
    mode is pre-trained by us. A configured file that does not exist is an error naming the key."""
    path = cfg.pretrain.init.get(mode)
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrain.init.{mode}: {path} does not exist (the published weights this mode's "
            "fine-tunings start from); fix the path or remove the key to pre-train this mode"
        )
    return path
