"""Runs that survive: a run killed at any step and resumed ends bitwise equal (weights and
metrics) to an uninterrupted one, for pre-training and fine-tuning, with and without loader
workers, with step- or time-triggered checkpoints, on a signal and on kill -9 in the middle of a
background write; a NaN loss stops the run keeping the last good checkpoint; a corrupt or foreign
checkpoint gets a clear error; the background writer saves the state as it was at the call."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_data import toy_finetune_data, toy_pretrain_data, toy_test_loader

import unilearn.engine.best_epoch as best_epoch
import unilearn.engine.finetune as finetune
import unilearn.engine.pretrain as pretrain
import unilearn.engine.training as training
from unilearn.config import load_config
from unilearn.engine.checkpoint_writer import CheckpointWriter
from unilearn.engine.checkpointing import CheckpointSchedule
from unilearn.engine.step import NonFiniteLossError
from unilearn.engine.train_state import capture_rng, restore_rng
from unilearn.models.checkpoint import CheckpointError, read_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# 3 epochs of 9 steps; a resumable checkpoint every 3 steps (and at each epoch end)
OVERRIDES = [
    "wandb.mode=disabled", "finetune.epochs=3", "finetune.batch_size=8", "finetune.warmup_epochs=1",
    "finetune.checkpoint_every=3", "finetune.blr=0.05", "finetune.mixup=0.8", "finetune.cutmix=1.0",
    "model.drop_path=0.1", "pretrain.epochs=2", "pretrain.batch_size=8", "pretrain.checkpoint_every=3",
    "pretrain.blr=0.01",
]  # fmt: skip


class Killed(BaseException):
    """Stands in for SIGKILL / pre-emption between two steps."""


def _kill_after(monkeypatch, module, n_steps: int) -> None:
    real, calls = module.train_step, [0]

    def step(*args, **kwargs):
        if calls[0] == n_steps:
            raise Killed
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", step)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def _assert_bitwise(a: Path, b: Path) -> None:
    sa, sb = _state(a / "checkpoint.pt"), _state(b / "checkpoint.pt")
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs after resume"


def _losses(run: Path) -> list[dict]:
    keep = ("epoch", "step", "lr", "loss_dfer", "loss_sfer", "aux_loss", "loss_image", "loss_video")
    lines = (run / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k in keep} for line in lines]


@pytest.fixture
def cfg():
    return load_config(CONFIGS / "demo.yaml", OVERRIDES)


@pytest.mark.parametrize(("kill_at", "workers"), [(7, 0), (5, 0), (11, 2)])
def test_finetune_resume_is_bitwise_identical(tmp_path, monkeypatch, cfg, kill_at, workers):
    monkeypatch.setattr(
        finetune, "finetune_data", lambda *a, **k: toy_finetune_data(*a, **k, num_workers=workers)
    )
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "straight", progress=False)

    with monkeypatch.context() as m:
        _kill_after(m, finetune, kill_at)
        with pytest.raises(Killed):
            finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()
    saved = read_checkpoint(tmp_path / "resumed" / "last.pt")["step"]
    assert 0 < saved <= kill_at
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "resumed", progress=False)

    _assert_bitwise(tmp_path / "straight", tmp_path / "resumed")
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def _tested(run: Path) -> list[dict]:
    import json

    keep = ("epoch", "test/uar", "test/war", "select/uar", "select/war", "val/uar", "val/war",
            "best/epoch", "best/war", "best_val/epoch", "best_val/war")  # fmt: skip
    lines = (run / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k in keep} for line in lines]


@pytest.mark.parametrize(
    ("kill", "selection"),
    [("step 7", []), ("step 5", []), ("writing predictions", []),
     ("step 5", ["finetune.selection.best=test"]),
     ("writing predictions", ["finetune.selection.validation=0.25"])],
)  # fmt: skip
def test_finetune_with_tests_resumes_bitwise_and_keeps_the_best(
    tmp_path, monkeypatch, cfg, kill, selection
):
    import pandas as pd

    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    monkeypatch.setattr(best_epoch, "test_loader", toy_test_loader)
    cfg = cfg.with_overrides(["finetune.eval_every=1", *selection])
    tests = ("ferv39k", "affectnet7")  # a joint single-split run: its own test and AffectNet-7
    validation = cfg.finetune.selection.holdout is not None
    score = "select/war" if cfg.finetune.selection.best == "authors" else "test/war"

    def run(out):
        return finetune.run(
            cfg, "unilearn", "ferv39k", None, None, out, progress=False, tests=tests
        )

    run(tmp_path / "straight")
    # the tests draw no training random number: the weights are those of a run without tests
    finetune.run(cfg, "unilearn", "ferv39k", None, None, tmp_path / "untested", progress=False)
    _assert_bitwise(tmp_path / "straight", tmp_path / "untested")

    with monkeypatch.context() as m:
        if kill.startswith("step"):
            _kill_after(m, finetune, int(kill.split()[1]))
        else:  # after the last epoch's last.pt, before the prediction files
            m.setattr(best_epoch, "write_predictions", lambda *a: (_ for _ in ()).throw(Killed))
        with pytest.raises(Killed):
            run(tmp_path / "resumed")
    run(tmp_path / "resumed")

    _assert_bitwise(tmp_path / "straight", tmp_path / "resumed")
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")
    tested = _tested(tmp_path / "resumed")
    assert tested == _tested(tmp_path / "straight") and all(score in r for r in tested)
    assert all(("val/war" in r) == validation for r in tested)
    best = max(tested, key=lambda r: (r[score], -r["epoch"]))  # ties: the earlier epoch
    assert tested[-1]["best/epoch"] == best["epoch"]
    picks = [("best", "checkpoint-best.pt")] + [("val", "checkpoint-val.pt")] * validation
    for weights, checkpoint in picks:
        sa = _state(tmp_path / "straight" / checkpoint)
        sb = _state(tmp_path / "resumed" / checkpoint)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        for name in ("pred-ferv39k", f"pred-ferv39k.{weights}", "pred-affectnet7",
                     f"pred-affectnet7.{weights}"):  # fmt: skip
            a = pd.read_parquet(tmp_path / "straight" / f"{name}.parquet")
            b = pd.read_parquet(tmp_path / "resumed" / f"{name}.parquet")
            pd.testing.assert_frame_equal(a, b)
            assert len(a) == 24
    assert (tmp_path / "resumed" / "pred-ferv39k.val.parquet").exists() == validation
    best_metrics = __import__("json").loads(
        (tmp_path / "resumed" / "pred-ferv39k.best.metrics.json").read_text()
    )
    assert best_metrics["checkpoint_train"]["epoch"] == best["epoch"]
    if score == "test/war":  # picked on the very test it reports
        assert best_metrics["war"] == best["test/war"]
    if validation:
        val = max(tested, key=lambda r: (r["val/war"], -r["epoch"]))
        assert tested[-1]["best_val/epoch"] == val["epoch"]
        val_metrics = __import__("json").loads(
            (tmp_path / "resumed" / "pred-ferv39k.val.metrics.json").read_text()
        )
        assert val_metrics["checkpoint_train"]["epoch"] == val["epoch"]


def test_equal_wars_keep_the_earlier_epoch_whose_weights_give_the_best_predictions(
    tmp_path, monkeypatch, cfg
):
    import json

    import pandas as pd

    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    monkeypatch.setattr(best_epoch, "test_loader", toy_test_loader)
    real = best_epoch.test_metrics
    monkeypatch.setattr(best_epoch, "test_metrics", lambda *a: {**real(*a), "war": 0.5})
    cfg = cfg.with_overrides(["finetune.eval_every=1"])
    out = tmp_path / "run"
    with monkeypatch.context() as m:  # killed before the predictions: the resumed run loads
        m.setattr(best_epoch, "write_predictions", lambda *a: (_ for _ in ()).throw(Killed))
        with pytest.raises(Killed):
            finetune.run(cfg, "unilearn", "dfew", 1, None, out, progress=False, tests=("dfew",))
    finetune.run(cfg, "unilearn", "dfew", 1, None, out, progress=False, tests=("dfew",))

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["best/epoch"] for r in log] == [0, 0, 0]  # three equal WARs: the first epoch
    best = read_checkpoint(out / "checkpoint-best.pt")
    assert best["meta"]["train"]["epoch"] == 0 and best["meta"]["train"]["step"] == log[0]["step"]
    metrics = json.loads((out / "pred-dfew.best.metrics.json").read_text())
    assert metrics["checkpoint_train"]["epoch"] == 0
    last, first = (pd.read_parquet(out / f"pred-dfew{s}.parquet") for s in ("", ".best"))
    assert list(last.clip_id) == list(first.clip_id)
    assert not np.allclose(np.stack(last.scores), np.stack(first.scores))  # other weights


def test_pretrain_resume_is_bitwise_identical(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(pretrain, "pretrain_data", toy_pretrain_data)
    pretrain.run(cfg, "image+video", None, tmp_path / "straight", progress=False)
    with monkeypatch.context() as m:
        _kill_after(m, pretrain, 5)
        with pytest.raises(Killed):
            pretrain.run(cfg, "image+video", None, tmp_path / "resumed", progress=False)
    pretrain.run(cfg, "image+video", None, tmp_path / "resumed", progress=False)
    _assert_bitwise(tmp_path / "straight", tmp_path / "resumed")
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    real, calls = finetune.normalize, [0]

    def poisoned(x):
        calls[0] += 1
        out = real(x)
        return out * float("nan") if calls[0] == 5 else out

    monkeypatch.setattr(finetune, "normalize", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4.*last\.pt is kept"):
        finetune.run(cfg, "unilearn", "dfew", 1, None, run, progress=False)
    state = read_checkpoint(run / "last.pt")
    assert state["step"] == 3  # the checkpoint of step 3, written before the bad step
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "checkpoint.pt").exists()


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"last\.pt: not a readable PyTorch checkpoint"):
        finetune.run(cfg, "unilearn", "dfew", 1, None, run, progress=False)
    # a truncated real checkpoint (a kill in the middle of a non-atomic copy)
    good = tmp_path / "good"
    finetune.run(cfg.with_overrides(["finetune.epochs=1"]), "unilearn", "dfew", 1, None, good,
                 progress=False)  # fmt: skip
    data = (good / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        finetune.run(cfg, "unilearn", "dfew", 1, None, run, progress=False)


def test_resume_refuses_another_runs_checkpoint(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    run = tmp_path / "run"
    finetune.run(cfg.with_overrides(["finetune.epochs=1"]), "unilearn", "dfew", 1, None, run,
                 progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="written by a run with config"):
        finetune.run(cfg.with_overrides(["finetune.blr=0.01"]), "unilearn", "dfew", 1, None, run,
                     progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="belongs to run"):
        finetune.run(cfg.with_overrides(["finetune.epochs=1"]), "unilearn", "dfew", 2, None, run,
                     progress=False)  # fmt: skip


def test_rng_states_round_trip():
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_time_triggered_checkpoints_resume_bitwise(tmp_path, monkeypatch, cfg):
    # a 1e-9-minute interval is always due: a save at every check (every 2 steps), none between
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    timed = cfg.with_overrides(["finetune.checkpoint_every=null",
                                "finetune.checkpoint_minutes=1e-9", "runtime.log_every=2"])  # fmt: skip
    finetune.run(timed, "unilearn", "dfew", 1, None, tmp_path / "straight", progress=False)
    with monkeypatch.context() as m:
        _kill_after(m, finetune, 7)
        with pytest.raises(Killed):
            finetune.run(timed, "unilearn", "dfew", 1, None, tmp_path / "resumed", progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 6
    finetune.run(timed, "unilearn", "dfew", 1, None, tmp_path / "resumed", progress=False)
    _assert_bitwise(tmp_path / "straight", tmp_path / "resumed")
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_checkpoint_minutes_saves_at_checks_after_the_interval():
    from unilearn.engine.distributed import DistInfo

    now = [0.0]
    when = CheckpointSchedule(None, 1.0, 5, 100, DistInfo(), clock=lambda: now[0])
    now[0] = 30.0
    assert not when.after_step(5) and not when.at_epoch_end(20)  # not due yet
    now[0] = 61.0
    assert not when.after_step(7)  # due, but not a check step
    assert when.after_step(10)
    when.saved()
    assert not when.after_step(15) and not when.at_epoch_end(16)
    assert when.at_epoch_end(100)  # the last step always saves
    steps = CheckpointSchedule(3, None, 5, 100, DistInfo())
    assert [s for s in range(1, 10) if steps.after_step(s)] == [3, 6, 9]
    assert steps.at_epoch_end(4)  # without a time trigger, every epoch end saves


def test_device_loss_sums_give_the_history_of_host_sums(tmp_path, monkeypatch, cfg):
    # the old engine summed `.item()` values in Python floats: the device float64 sums must give
    # the same log, bit for bit
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "device", progress=False)
    real = training.EpochSums.add

    def host_add(self, task, loss, aux, n):
        real(self, task, float(loss.item()), float(aux.item()), n)

    monkeypatch.setattr(training.EpochSums, "add", host_add)
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "host", progress=False)
    assert _losses(tmp_path / "device") == _losses(tmp_path / "host")
    assert len(_losses(tmp_path / "host")) == 3


def test_nan_stops_within_log_every_steps_without_a_save(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    real, calls = finetune.normalize, [0]

    def poisoned(x):
        calls[0] += 1
        return real(x) * float("nan") if calls[0] == 2 else real(x)

    monkeypatch.setattr(finetune, "normalize", poisoned)
    run = tmp_path / "run"
    quiet = cfg.with_overrides(["finetune.checkpoint_every=1000", "runtime.log_every=3"])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 1.*no checkpoint"):
        finetune.run(quiet, "unilearn", "dfew", 1, None, run, progress=False)
    assert calls[0] == 3  # stopped at the check after step 3, not at the epoch end (5)
    assert not (run / "last.pt").exists()


class Preempted(BaseException):
    """What submitit's SIGUSR1 handler does after requeueing the job: exit the process."""


def test_signal_saves_at_the_step_end_then_passes_it_on(tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "straight", progress=False)
    seen = []

    def requeue(signum, frame):
        seen.append(signum)
        raise Preempted

    previous = signal.signal(signal.SIGUSR1, requeue)
    real, calls = finetune.train_step, [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 8:  # the signal arrives in the middle of step 8
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(*args, **kwargs)

    try:
        with monkeypatch.context() as m:
            m.setattr(finetune, "train_step", step)
            with pytest.raises(Preempted):
                finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "resumed",
                             progress=False)  # fmt: skip
        assert seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is requeue  # the handler is given back
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # not a checkpoint_every step (3, 6): saved because of the signal, after step 8 finished
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 8
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "resumed", progress=False)
    _assert_bitwise(tmp_path / "straight", tmp_path / "resumed")
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


# The child trains until its second background write (step 6) has written half of its temp file,
# then waits there to be killed.
_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from _engine_data import toy_finetune_data
import unilearn.engine.finetune as finetune
import unilearn.engine.checkpoint_writer as writer
from unilearn.atomic import atomic_path
from unilearn.config import load_config
import torch

real_save, calls = writer.torch_save, [0]
def torch_save(obj, path):
    calls[0] += 1
    if calls[0] < 2:
        return real_save(obj, path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        data = tmp.read_bytes()
        tmp.write_bytes(data[: len(data) // 2])
        Path({marker!r}).write_text(str(obj["step"]))
        time.sleep(600)

writer.torch_save = torch_save
finetune.finetune_data = toy_finetune_data
cfg = load_config({config!r}, {overrides!r})
finetune.run(cfg, "unilearn", "dfew", 1, None, Path({out!r}), progress=False)
"""


@pytest.mark.slow
def test_kill_9_during_a_background_write_resumes_bitwise(tmp_path, monkeypatch, cfg):
    out, marker = tmp_path / "resumed", tmp_path / "writing"
    code = _CHILD.format(tests=str(Path(__file__).parent), marker=str(marker),
                         config=str(CONFIGS / "demo.yaml"), overrides=OVERRIDES, out=str(out))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the child ended before its second checkpoint write"
            assert time.monotonic() < deadline, "the child never reached its second write"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert marker.read_text() == "6"
    assert list(out.glob(".last.pt.*.tmp")), "the half-written temp file is left behind"
    assert read_checkpoint(out / "last.pt")["step"] == 3  # the complete previous one

    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    finetune.run(cfg, "unilearn", "dfew", 1, None, out, progress=False)
    assert not list(out.glob(".last.pt.*.tmp"))  # cleaned up on resume
    finetune.run(cfg, "unilearn", "dfew", 1, None, tmp_path / "straight", progress=False)
    _assert_bitwise(tmp_path / "straight", out)
    assert _losses(tmp_path / "straight") == _losses(out)


def test_background_save_writes_the_state_at_the_call(tmp_path):
    weights = torch.arange(6, dtype=torch.float32)
    release, finished = threading.Event(), []

    def then(state):
        release.wait(timeout=30)
        finished.append(state["step"])

    writer = CheckpointWriter()
    writer.save(tmp_path / "a.pt", {"w": weights, "step": 1}, then=then)
    assert finished == []  # save() returned while the write is still in flight
    weights.add_(100)  # training goes on, in place
    release.set()
    writer.save(tmp_path / "b.pt", {"w": weights, "step": 2})  # waits for the first write
    assert finished == [1]
    writer.wait()
    assert torch.equal(torch.load(tmp_path / "a.pt")["w"], torch.arange(6.0))
    assert torch.equal(torch.load(tmp_path / "b.pt")["w"], torch.arange(6.0) + 100)


def test_background_write_error_is_raised_in_the_training_thread(tmp_path):
    writer = CheckpointWriter()
    (tmp_path / "file").write_text("")
    writer.save(tmp_path / "file" / "x.pt", {"step": 1})  # a file where a directory must be
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # raised once
