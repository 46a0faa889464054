"""What one `unilearn preprocess` run did (`Summary`, printed by the CLI): clips stored and
quarantined with their reasons, the store's framing, the frames left out for having no face and
the clips framed otherwise than their store (by framing, with why)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from unilearn.catalogue import FRAMING_TEXT


@dataclass
class Summary:
    dataset: str
    rows: int
    clips: int
    already: int
    stored_now: int
    failed_now: int
    stored_rows: int
    quarantined_rows: int
    reasons: Counter
    seconds: float
    pending: int = 0
    shard: tuple[int, int] | None = None
    framing: str = "default"
    codec: str = "jpeg"
    # clips stored with frames left out (no face in them) and those frames; clips framed
    # otherwise than the store's framing, by their framing
    clips_short: int = 0
    frames_without_face: int = 0
    other_framings: Counter = field(default_factory=Counter)

    def report(self) -> str:
        if self.shard is not None:
            i, n = self.shard
            return (
                f"preprocess {self.dataset} shard {i}/{n}: {self.clips} clips; {self.already} "
                f"already in the store, {self.stored_now} stored now, {self.failed_now} failed now "
                f"({self.seconds:.1f} s)"
                + (
                    f", {self.pending} still to do (re-run to resume)"
                    if self.pending
                    else "; done (tables: --merge when every shard is done)"
                )
            )
        lines = [
            f"preprocess {self.dataset} (framing {self.framing}: {FRAMING_TEXT[self.framing]}; "
            f"{CODEC_TEXT[self.codec]}): "
            f"{self.rows} manifest rows, {self.clips} unique clips; "
            f"{self.already} already in the store, {self.stored_now} stored now, "
            f"{self.failed_now} failed now ({self.seconds:.1f} s)",
            f"  -> {self.stored_rows} rows in the store, {self.quarantined_rows} rows quarantined"
            + (f", {self.pending} clips still to do (re-run to resume)" if self.pending else ""),
        ]
        lines += [
            f"  quarantined clips: {n} x {reason}" for reason, n in self.reasons.most_common()
        ]
        if self.frames_without_face:
            lines.append(
                f"  {self.frames_without_face} frames without a face left out of {self.clips_short} "
                "stored clips (as the authors' MTCNN crop, which writes no such frame)"
            )
        lines += [
            f"  {n} clips framed {kind}, not {self.framing} ({_OTHER_FRAMING[kind]})"
            for kind, n in self.other_framings.items()
        ]
        return "\n".join(lines)


# How a store keeps its frames (`data.store.codec`).
CODEC_TEXT = {"jpeg": "JPEG frames", "h264": "every frame in H.264 groups"}
# Why a clip is framed otherwise than its store's framing, by the framing it got.
_OTHER_FRAMING = {
    "box": "no face found in the annotation box: its plain crop",
    "whole_frame": "rows marked face-cropped: only resized",
    "tracked": "rows detected without the dataset's own framing",
}
