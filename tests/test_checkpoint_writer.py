"""A `last.pt` save holds the state as of the save call although the parameters and optimiser
moments are copied while the next step runs: that step's `optimizer.step()` waits for the copy
(never for the disk). Without CUDA the pinned-memory path falls back to pageable buffers with
the same bytes."""

from __future__ import annotations

import threading

import torch
from torch import nn

from unilearn.engine.checkpoint_writer import (
    CheckpointWriter,
    HostBuffers,
    host_buffer,
    optimizer_storages,
)
from unilearn.engine.train_state import train_state


def _model_and_adamw():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.Linear(64, 7))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, optimizer)  # the moments exist
    return model, optimizer


def _step(model, optimizer):
    loss = model(torch.randn(8, 32)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _state(model, optimizer, step):
    return train_state(model=model, optimizer=optimizer, scaler=None, step=step,
                       config_hash="h", meta={}, extra={"history": []})  # fmt: skip


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_parameters_and_moments_are_deferred_and_the_rest_copied_at_the_call():
    model, optimizer = _model_and_adamw()
    buffers = HostBuffers()
    buffers.copy(_state(model, optimizer, 1), optimizer_storages(optimizer))
    deferred = {src.untyped_storage().data_ptr() for _, src in buffers.deferred}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    moments = {optimizer.state[p][k].untyped_storage().data_ptr()
               for p in model.parameters() for k in ("exp_avg", "exp_avg_sq")}  # fmt: skip
    assert params | moments <= deferred
    buffers.copy_deferred()
    assert buffers.deferred == []


def test_save_holds_the_state_of_the_call_through_the_next_optimizer_steps(tmp_path):
    model, optimizer = _model_and_adamw()
    writer = CheckpointWriter()
    for step in (1, 2, 3):  # the buffers are reused: every save is of its own call
        state = _state(model, optimizer, step)
        expected = _clone(state)
        release = threading.Event()
        writer.save(tmp_path / "last.pt", state, then=lambda _, r=release: r.wait(30),
                    hold=optimizer)  # fmt: skip
        _step(model, optimizer)  # runs while the write is in flight: waits for the copy only
        _step(model, optimizer)
        assert writer._thread.is_alive()  # the disk write still runs: the step did not wait on it
        release.set()
        writer.wait()
        _assert_same(torch.load(tmp_path / "last.pt", weights_only=True), expected)


def test_synchronous_and_deferred_saves_write_the_same_bytes(tmp_path):
    model, optimizer = _model_and_adamw()
    state = _state(model, optimizer, 1)
    CheckpointWriter(background=False).save(tmp_path / "sync.pt", state, hold=optimizer)
    writer = CheckpointWriter()
    writer.save(tmp_path / "deferred.pt", state, hold=optimizer)
    _step(model, optimizer)
    writer.wait()
    _assert_same(torch.load(tmp_path / "sync.pt", weights_only=True),
                 torch.load(tmp_path / "deferred.pt", weights_only=True))  # fmt: skip


def test_pinned_buffers_fall_back_to_pageable_memory_without_cuda():
    buf = host_buffer((3, 5), torch.bfloat16, pin=True)
    assert buf.device.type == "cpu" and buf.shape == (3, 5) and buf.dtype == torch.bfloat16
    assert buf.is_pinned() == torch.cuda.is_available()
    src = torch.randn(3, 5).to(torch.bfloat16)
    buf.copy_(src, non_blocking=True)  # the async copy call of the CUDA path, on pageable memory
    assert torch.equal(buf, src)
    assert not host_buffer((2,), torch.float32, pin=False).is_pinned()
