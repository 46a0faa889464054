"""A training run reports every N steps and at each epoch end: a flushed line (epoch/step of
total, losses, lr, samples/s, ETA), a W&B point (loss, lr, grad-norm, expert usage; the epoch's
record at its end, the last one and the tests as the run's summary) and the `progress.json` that
`unilearn status` reads."""

from __future__ import annotations

import io
import json

import torch
from torch import nn

from unilearn.config import MoAEConfig
from unilearn.engine.training import EpochSums
from unilearn.models.routing import NoisyTopKGate
from unilearn.progress import PROGRESS_FILE, Progress, format_duration


class Recorder:
    def __init__(self) -> None:
        self.points: list[tuple[int, dict]] = []
        self.summaries: list[dict] = []
        self.exit_codes: list[int] = []

    def log(self, metrics: dict, step: int) -> None:
        self.points.append((step, metrics))

    def summary(self, metrics: dict) -> None:
        self.summaries.append(metrics)

    def finish(self, exit_code: int = 0) -> None:
        self.exit_codes.append(exit_code)


class TinyRouted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Module()])
        self.blocks[0].gate = NoisyTopKGate(4, MoAEConfig(
            n_experts=3, top_k=1, aux_loss_coef=0.0, noisy_gating=True, capacity_factor=1.0
        ))  # fmt: skip
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.blocks[0].gate(x)
        return self.head(x)


def _train(report: Progress, model: nn.Module, steps: int, sums: EpochSums) -> None:
    for step in range(1, steps + 1):
        model.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        # the engines keep the loss on the device; Progress reads it every N steps only
        sums.add("dfer", torch.tensor(float(step)), 0.0, 5)
        report.step(step, sums)


def test_reports_every_n_steps_with_loss_lr_grad_norm_and_expert_usage_and_each_epoch(tmp_path):
    model, wandb, out = TinyRouted(), Recorder(), io.StringIO()
    report = Progress(desc="finetune unilearn dfew-fold1", stage="finetune", run_dir=tmp_path,
                      start_step=0, end_step=12, steps_per_epoch=6, every=2,
                      schedule=lambda s: 1e-3 * (s + 1), wandb=wandb, model=model,
                      stream=out)  # fmt: skip
    sums = EpochSums()
    _train(report, model, 6, sums)
    record = {"epoch": 0, "step": 6, "lr": 6e-3, "loss_dfer": 3.5, "samples_per_s": 9.0}
    report.epoch_end(record)

    assert [step for step, _ in wandb.points] == [2, 4, 6, 6]
    assert wandb.points[-1][1] == {"train/epoch": 0, "train/step": 6, "train/lr": 6e-3,
                                   "train/loss_dfer": 3.5, "train/samples_per_s": 9.0}  # fmt: skip
    step, point = wandb.points[1]
    assert point["train/step_loss_dfer"] == 3.5  # mean of steps 3 and 4: a window, not the epoch
    assert point["train/lr"] == 4e-3 and point["train/grad_norm"] > 0
    shares = [point[f"experts/block0/e{i}"] for i in range(3)]
    assert abs(sum(shares) - 1) < 1e-6  # tokens of steps 3-4 only: the counters restart
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(
        "finetune unilearn dfew-fold1 | epoch 1/2 | step 2/12 | loss_dfer 1.5"
    )
    assert "lr 0.002" in lines[0] and "samples/s" in lines[0] and "ETA " in lines[0]
    assert lines[-1].startswith("finetune unilearn dfew-fold1 | epoch 1/2 done | step 6/12")
    state = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert (state["state"], state["epoch"], state["epochs"], state["step"]) == ("running", 1, 2, 6)
    assert state["loss"] == {"loss_dfer": 3.5} and state["eta_s"] is not None

    # a new epoch starts new sums: the window restarts with them
    sums = EpochSums()
    _train(report, model, 2, sums)
    assert wandb.points[-1][1]["train/step_loss_dfer"] == 1.5
    report.finished("done", {**record, "test/war": 0.5}, {"last/dfew/war": 0.5})
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["state"] == "done"
    assert wandb.summaries[-1]["train/loss_dfer"] == 3.5 and wandb.summaries[-1]["test/war"] == 0.5
    assert wandb.summaries[-1]["last/dfew/war"] == 0.5 and wandb.exit_codes == [0]


def test_only_rank0_reports(tmp_path):
    out = io.StringIO()
    report = Progress(desc="pretrain video", stage="pretrain", run_dir=tmp_path, start_step=0,
                      end_step=4, steps_per_epoch=4, every=1, schedule=lambda s: 0.1,
                      is_main=False, stream=out)  # fmt: skip
    _train(report, nn.Linear(4, 2), 2, EpochSums())
    report.finished()
    assert out.getvalue() == "" and not (tmp_path / PROGRESS_FILE).exists()


def test_durations_read_as_clock_times():
    assert [format_duration(s) for s in (None, 5, 65, 3723)] == ["-", "0:05", "1:05", "1:02:03"]
