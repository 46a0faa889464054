"""Lazily decoded media for `unilearn predict`: a clip's frames read on demand, so a long 720p
video is never held in memory at full resolution.

`MediaFrames(path, kind)` behaves like the `[T, H, W, 3]` array `unilearn.data.decode.read_media`
returns (`len()`, `frames[t]`, `frames[list]`, same pixels: decord for videos, the same image
reader for frame folders and images) and times its decoding. Face tracking reads the probe frames
one by one in increasing order; `plan(indices)` announces them so they are decoded in batches of
`chunk` (decord decodes forward from the last keyframe once per batch, not once per frame). When
decord cannot open a video, the whole video is decoded with `read_video` (PyAV fallback) instead.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unilearn.data.decode import MediaError, list_frames, read_image, read_video


class MediaFrames:
    """Frames of one video file, frame folder or image, decoded when indexed."""

    def __init__(self, path: str | Path, kind: str, chunk: int = 16) -> None:
        self.path = Path(path)
        self.kind = kind
        self.chunk = chunk
        self.decode_seconds = 0.0
        self.fps: float | None = None
        self.frame_shape: tuple[int, int] | None = None  # (H, W) once a frame was decoded
        self._plan: list[int] = []
        self._cache: dict[int, np.ndarray] = {}
        self._files: list[Path] = []
        self._array: np.ndarray | None = None
        self._reader = None
        start = time.perf_counter()
        if kind == "video":
            self._open_video()
        elif kind == "frames":
            self._files = list_frames(self.path)
            if not self._files:
                raise MediaError(f"{self.path}: frame folder has no image files")
            self._n = len(self._files)
        elif kind == "image":
            self._array = read_image(self.path)[None]
            self._n = 1
        else:
            raise MediaError(f"{self.path}: unknown media kind {kind!r}")
        self.decode_seconds += time.perf_counter() - start

    def _open_video(self) -> None:
        if not self.path.is_file():
            raise MediaError(f"{self.path}: video file does not exist")
        try:
            import decord

            reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
            n = len(reader)
            if n == 0:
                raise MediaError("decord found no frames")
            self._reader, self._n = reader, n
            self.fps = float(reader.get_avg_fps()) or None
        except Exception:  # noqa: BLE001 - decord's errors are untyped; read_video explains its own
            self._array = read_video(self.path)  # PyAV fallback: whole video, or MediaError
            self._n = len(self._array)
            self.fps = _av_fps(self.path)

    def __len__(self) -> int:
        return self._n

    def plan(self, indices: Sequence[int]) -> None:
        """Frames about to be read one at a time, in this order (decoded `chunk` at a time)."""
        self._plan = sorted({int(i) for i in indices})

    def __getitem__(self, index):
        if isinstance(index, int | np.integer):
            return self._one(int(index))
        indices = [int(i) for i in index]
        for i in indices:
            self._check(i)
        if self._array is not None:
            return self._array[indices]
        return self._read(indices)

    def _check(self, i: int) -> None:
        if not 0 <= i < self._n:
            raise IndexError(f"{self.path}: frame {i} requested, it has {self._n}")

    def _one(self, i: int) -> np.ndarray:
        self._check(i)
        if self._array is not None:
            return self._array[i]
        if i not in self._cache:
            # read ahead along the plan: the next `chunk` planned frames from i on
            at = bisect.bisect_left(self._plan, i)
            batch = self._plan[at : at + self.chunk] if self._plan[at : at + 1] == [i] else [i]
            self._cache = dict(zip(batch, self._read(batch)))
        return self._cache[i]

    def _read(self, indices: list[int]) -> np.ndarray:
        start = time.perf_counter()
        try:
            if self._reader is not None:
                frames = self._reader.get_batch(indices).asnumpy()
                if len(frames) != len(indices):
                    raise MediaError(
                        f"{self.path}: decord returned {len(frames)} of {len(indices)} frames"
                    )
            else:
                frames = np.stack([read_image(self._files[i]) for i in indices])
        except MediaError:
            raise
        except ValueError as exc:  # np.stack of frames of different sizes
            raise MediaError(f"{self.path}: frames differ in size ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - a decoder error mid-video
            raise MediaError(f"{self.path}: unreadable video ({exc})".splitlines()[0]) from None
        finally:
            self.decode_seconds += time.perf_counter() - start
        if self.frame_shape is None:
            self.frame_shape = tuple(frames.shape[1:3])
        elif tuple(frames.shape[1:3]) != self.frame_shape:
            raise MediaError(
                f"{self.path}: frames differ in size ({self.frame_shape} and {frames.shape[1:3]})"
            )
        return frames

    def shape(self) -> tuple[int, int]:
        """(H, W) of the frames (decodes the first frame if nothing was read yet)."""
        if self._array is not None:
            return tuple(self._array.shape[1:3])
        if self.frame_shape is None:
            self._one(0)
        return self.frame_shape


def _av_fps(path: Path) -> float | None:
    try:
        import av

        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
        return float(rate) if rate else None
    except Exception:  # noqa: BLE001 - the frame rate is only used for timeline times
        return None
