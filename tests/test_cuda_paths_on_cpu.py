"""The CUDA-only paths, run on CPU where their operation exists there, agree with the CPU paths:
the pre-training views cut on the device (torchvision `roi_align`) are the loader's cut
(`cv2.resize` of the box) to within rounding inside the box and within half the step across the
box edge on the border of up-scaled crops; the fused AdamW of CUDA makes the plain AdamW's update;
the checkpoint writer's pinned host buffers save the bytes its pageable ones do."""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from unilearn.data.transforms import crop_views_on_device, resize_crop_clip
from unilearn.engine import optim
from unilearn.engine.checkpoint_writer import CheckpointWriter
from unilearn.engine.step import set_lr
from unilearn.engine.train_state import train_state
from unilearn.models import create_model

SIZE = 32


def _outside(n: int, size: int = SIZE) -> np.ndarray:
    """Output rows (or columns) of an `n`-pixel box resized to `size` whose bilinear sample
    (pixel centres aligned) lies outside the box: where `cv2.resize` of the box repeats its
    edge pixel and `roi_align` on the whole frame blends in the pixel beyond it."""
    y = (np.arange(size) + 0.5) * n / size - 0.5
    return (y < 0) | (y > n - 1)


def _edge_step(frames: np.ndarray, top: int, left: int, h: int, w: int) -> tuple[float, float]:
    """Largest change across the box's top/bottom edges and across its left/right edges."""
    f = frames.astype(np.float32)
    rows = [abs(f[:, a] - f[:, b]).max() for a, b in ((top - 1, top), (top + h, top + h - 1))
            if 0 <= a < f.shape[1]]  # fmt: skip
    cols = [abs(f[:, :, a] - f[:, :, b]).max() for a, b in ((left - 1, left), (left + w, left + w - 1))
            if 0 <= a < f.shape[2]]  # fmt: skip
    return max(rows, default=0.0), max(cols, default=0.0)


def test_views_cut_on_the_device_are_the_loaders_cut_but_for_the_up_scaled_border():
    rng = np.random.default_rng(0)
    seen = {"up": 0, "down": 0, "border": 0}
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(4, 2 * SIZE + 1, 2))  # up- and down-scaled boxes
        height, width = h + int(rng.integers(0, 16)), w + int(rng.integers(0, 16))
        frames = rng.integers(
            0, 256, (2, height, width, 3), dtype=np.uint8
        )  # noise: sharpest edges
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        flip = bool(rng.integers(0, 2))
        loader = resize_crop_clip(frames, (top, left, h, w), SIZE, flip)
        device = crop_views_on_device(torch.from_numpy(frames)[None],
                                      torch.tensor([[top, left, h, w]], dtype=torch.int32),
                                      torch.tensor([flip]), 1, SIZE)[0]  # fmt: skip
        diff = (device - torch.from_numpy(loader).float()).abs().numpy()
        rows, cols = _outside(h), _outside(w)
        cols = cols[::-1] if flip else cols
        border = rows[:, None] | cols[None, :]
        # inside: the same bilinear sample, the loader's rounded to uint8 (cv2's 11-bit weights)
        assert diff[:, :, ~border].max(initial=0) < 1.0
        step_rows, step_cols = _edge_step(frames, top, left, h, w)
        bound = 0.5 * (rows[:, None] * step_rows + cols[None, :] * step_cols) + 1.0
        assert (diff <= bound).all()
        seen["up" if min(h, w) < SIZE else "down"] += 1
        seen["border"] += int((diff[:, :, border] > 1.0).any())
    assert min(seen.values()) > 5  # both kinds of crop, and borders that do differ, were seen


def _steps_on_fixed_gradients(steps: int = 3) -> dict[str, torch.Tensor]:
    """The engine's AdamW on the tiny UniLearn, fed the same seeded gradients every run: only the
    optimiser's kernel can make two runs differ (a forward/backward on 2 threads sums in an
    order of its own, and Adam's g / sqrt(v) magnifies that on near-zero gradients)."""
    torch.manual_seed(0)
    model = create_model("unilearn_tiny_patch16_64", num_classes=7, num_classes_sfer=7)
    opt = optim.build_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    grads = torch.Generator().manual_seed(1)
    for step in range(steps):
        set_lr(opt, 1e-3 * (step + 1))
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=grads) * 1e-2
        opt.step()
    return {"fused": opt.defaults.get("fused"), **model.state_dict()}


def test_fused_adamw_of_cuda_makes_the_plain_update(monkeypatch):
    monkeypatch.setattr(optim, "FUSED_DEVICES", ())  # what the engine does on CPU
    plain = _steps_on_fixed_gradients()
    monkeypatch.setattr(optim, "FUSED_DEVICES", ("cuda", "cpu"))  # the CUDA choice, on CPU
    fused = _steps_on_fixed_gradients()
    start = _steps_on_fixed_gradients(steps=0)
    assert fused.pop("fused") is True and not plain.pop("fused")
    start.pop("fused")
    moved = [k for k in plain if not torch.equal(plain[k], start[k])]
    assert len(moved) > 10  # the steps did move the weights
    for key, value in plain.items():
        torch.testing.assert_close(fused[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_adamw_falls_back_to_foreach_where_it_cannot_be_fused(monkeypatch):
    model = create_model("vit_tiny_patch16_64", num_classes=7)
    assert optim.adamw_kernel(model) == {"foreach": True}  # CPU: not a fused device
    monkeypatch.setattr(optim, "FUSED_DEVICES", ("cpu",))
    assert optim.adamw_kernel(model) == {"fused": True}
    model.head.weight = torch.nn.Parameter(torch.empty(7, 192, device="meta"))  # split devices
    assert optim.adamw_kernel(model) == {"foreach": True}
    for p in model.parameters():
        p.requires_grad_(False)
    assert optim.adamw_kernel(model) == {"foreach": True}  # nothing to fuse


def test_pinned_and_pageable_host_buffers_save_the_same_bytes(tmp_path, monkeypatch):
    from unilearn.engine import checkpoint_writer

    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_64", num_classes=7)
    opt = optim.build_optimizer(model, lr=1e-3, weight_decay=0.05)
    model(torch.randn(1, 3, 8, 64, 64)).sum().backward()
    opt.step()
    state = train_state(model=model, optimizer=opt, scaler=None, step=1, config_hash="h",
                        meta={}, extra={"history": []})  # fmt: skip
    CheckpointWriter(background=False).save(tmp_path / "pageable.pt", state, hold=opt)
    pinned = []
    plain = checkpoint_writer.host_buffer

    def every_buffer_pinned(shape, dtype, pin):  # as on CUDA, where every source is a CUDA tensor
        buf = plain(shape, dtype, pin=True)
        pinned.append(buf.is_pinned())
        return buf

    monkeypatch.setattr(checkpoint_writer, "host_buffer", every_buffer_pinned)
    writer = CheckpointWriter()
    writer.save(tmp_path / "pinned.pt", state, hold=opt)
    writer.wait()
    assert pinned and set(pinned) == {torch.cuda.is_available()}  # pinned only where CUDA is
    assert _records(tmp_path / "pinned.pt") == _records(tmp_path / "pageable.pt")


def _records(path) -> dict[str, bytes]:
    """Every record of a torch.save archive (named without the archive's folder, which is the
    temporary file's name of the atomic write)."""
    with zipfile.ZipFile(path) as z:
        return {name.split("/", 1)[1]: z.read(name) for name in z.namelist()}
