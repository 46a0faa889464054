"""`unilearn predict --timeline`: class probabilities along a video, one window at a time.

A window is one test clip: `num_frames` frames at the evaluation temporal stride, so it spans
`(num_frames - 1) * stride + 1` frames. Windows start every `--window-stride` frames (`12`) or
seconds (`0.5s`; default half a window); the last window ends at the last frame, so the tail is
covered. Each window is scored alone (no averaging). The table has one row per window; `--plot`
draws each input's probabilities over time (matplotlib, Agg backend) into a PNG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Window:
    start: int  # first frame
    end: int  # last frame it touches (inclusive)
    frames: tuple[int, ...]  # the clip's frame indices


@dataclass(frozen=True)
class WindowStride:
    value: float
    unit: str  # "frames" | "seconds"


def parse_window_stride(text: str | None) -> WindowStride | None:
    """`12` (frames), `0.5s` / `0.5 sec` (seconds); None = half a window."""
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|secs|seconds?)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            f"--window-stride {text!r}: expected a positive number of frames (12) or seconds (0.5s)"
        )
    if m.group(2):
        return WindowStride(float(m.group(1)), "seconds")
    if not float(m.group(1)).is_integer():
        raise ValueError(f"--window-stride {text!r}: frames must be a whole number (or add 's')")
    return WindowStride(float(m.group(1)), "frames")


def window_span(num_frames: int, frame_stride: int) -> int:
    return (num_frames - 1) * frame_stride + 1


def step_frames(
    stride: WindowStride | None, num_frames: int, frame_stride: int, fps: float | None
) -> int:
    """The window step in frames; raises ValueError when seconds are asked without a frame rate."""
    if stride is None:
        return max(1, window_span(num_frames, frame_stride) // 2)
    if stride.unit == "frames":
        return max(1, int(stride.value))
    if not fps:
        raise ValueError(
            "--window-stride in seconds needs the frame rate: this input has none (pass --fps)"
        )
    return max(1, round(stride.value * fps))


def timeline_windows(n: int, num_frames: int, frame_stride: int, step: int) -> list[Window]:
    """Windows over an `n`-frame clip; a clip shorter than a window gets one, padded with its
    last frame (as test clips are)."""
    span = window_span(num_frames, frame_stride)
    if n <= span:
        starts = [0]
    else:
        starts = list(range(0, n - span + 1, step))
        if starts[-1] != n - span:
            starts.append(n - span)
    return [
        Window(s, min(s + span, n) - 1, tuple(min(s + i * frame_stride, n - 1) for i in range(num_frames)))
        for s in starts
    ]  # fmt: skip


def window_row(window: Window, fps: float | None) -> dict:
    nan = float("nan")
    return {
        "start_frame": window.start,
        "end_frame": window.end,
        "start_s": window.start / fps if fps else nan,
        "end_s": (window.end + 1) / fps if fps else nan,
    }


def plot_timeline(rows: pd.DataFrame, classes: list[str], path: Path, title: str) -> Path:
    """One input's window rows -> PNG of each class's probability over time (or frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unilearn.atomic import atomic_path

    use_time = rows["start_s"].notna().all()
    centre = (
        (rows["start_s"] + rows["end_s"]) / 2
        if use_time
        else (rows["start_frame"] + rows["end_frame"]) / 2
    )
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, name in enumerate(classes):
        ax.plot(centre, rows[f"prob_{name}"], label=name, color=cmap(k), lw=1.6,
                marker="o" if len(rows) < 30 else None, ms=3)  # fmt: skip
    ax.set_xlabel("time (s, window centre)" if use_time else "frame (window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_name(input_path: str, used: set[str]) -> str:
    """A file name per input (`clip.mp4` -> `clip.png`), unique among `used`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(input_path).name) or "input"
    name, k = f"{stem}.png", 2
    while name in used:
        name, k = f"{stem}-{k}.png", k + 1
    used.add(name)
    return name
