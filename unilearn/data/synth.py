"""`unilearn synth`: write all five datasets as synthetic, learnable data in their NATIVE layouts.

DIR/DFEW, DIR/MAFW, DIR/FERV39K, DIR/AffectNet and DIR/VoxCeleb2 are laid out exactly as the
datasets are distributed (split files included), so `unilearn manifest` reads them with the same
readers as the real data. DIR/raw_videos holds uncropped scene videos (a face in a larger scene, and
one without a face) for the face-clip stage and `unilearn predict`. The demo preset also plants a
few broken inputs (an empty frame folder, a split row naming a missing clip, a label outside the
class set, a truncated mp4, AffectNet's non-emotion codes) so the quarantine path always runs.
DIR/synth.json is written last: its presence means the tree is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from unilearn import __version__
from unilearn.atomic import write_text
from unilearn.catalogue import AFFECTNET, DATASETS, DFEW, FERV39K, MAFW, canonical_emotion
from unilearn.data.synth_face import (
    Identity,
    Pose,
    expression_at,
    render,
    render_background,
    sample_identity,
)

# Directory of each dataset under DIR, as the datasets name their own top folder.
ROOTS: dict[str, str] = {name: d.folder for name, d in DATASETS.items()}
RAW_VIDEOS = "raw_videos"
SUMMARY = "synth.json"

FERV39K_SCENES = ("CrimeDrama", "DailyLife", "Interview", "TalkShow")


@dataclass(frozen=True)
class Preset:
    """How much of each dataset to write. Per-class counts >= 5 put every class in every fold's
    test split."""

    frames: tuple[int, int]  # min, max frames per DFER clip
    size: int  # DFER frame side (pixels)
    dfew_per_class: int
    mafw_per_class: int
    ferv39k_per_class: int  # 1 in 5 goes to the test split
    affectnet_size: int
    affectnet_train_per_class: int
    affectnet_val_per_class: int
    vox_clips: int
    vox_frames: int
    vox_size: int
    raw_videos: int  # scene videos with a face (plus one without)
    raw_size: tuple[int, int]  # width, height
    raw_frames: int
    broken: bool = True
    jpeg_quality: int = 90
    # The labelled datasets cast their clips from one pool of actors, each playing every emotion
    # (as DFEW's film actors do): who is on screen says nothing about the label, so a model must
    # read the expression; with a new person per clip a tiny model memorises faces instead.
    actors: int = 16


PRESETS: dict[str, Preset] = {
    # the demo table: 260-280 clips per video dataset (a tiny ViT memorises 140 and learns
    # nothing), ~500 images, 40 VoxCeleb2 clips
    "demo": Preset(
        frames=(12, 24),
        size=96,
        dfew_per_class=40,
        mafw_per_class=24,
        ferv39k_per_class=40,
        affectnet_size=112,
        affectnet_train_per_class=60,
        affectnet_val_per_class=8,
        vox_clips=40,
        vox_frames=32,
        vox_size=96,
        raw_videos=4,
        raw_size=(320, 240),
        raw_frames=48,
    ),
    # unit tests: a few seconds
    "tiny": Preset(
        frames=(8, 10),
        size=64,
        dfew_per_class=5,
        mafw_per_class=5,
        ferv39k_per_class=5,
        affectnet_size=64,
        affectnet_train_per_class=4,
        affectnet_val_per_class=2,
        vox_clips=6,
        vox_frames=16,
        vox_size=64,
        raw_videos=1,
        raw_size=(160, 120),
        raw_frames=24,
    ),
}

_SKIN_FOR_DETECTION = (
    (238.0, 198.0, 166.0),
    (224.0, 172.0, 140.0),
    (255.0, 224.0, 196.0),
    (198.0, 144.0, 110.0),
)
_DATASET_CODES = {"dfew": 1, "mafw": 2, "ferv39k": 3, "affectnet": 4, "voxceleb2": 5, "raw": 6}
_VALENCE_AROUSAL = {
    "neutral": (0.0, 0.0),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.3),
    "surprise": (0.2, 0.8),
    "fear": (-0.6, 0.7),
    "disgust": (-0.7, 0.4),
    "angry": (-0.6, 0.7),
    "contempt": (-0.4, 0.2),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, type=Path, help="directory to write the datasets into"
    )
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="how much data")
    parser.add_argument("--seed", default=0, type=int, help="same seed -> byte-identical files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        summary = write_synthetic(args.out, args.preset, args.seed, progress=not args.no_progress)
    except (FileExistsError, ValueError) as err:
        print(f"unilearn synth: {err}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{d} {s['rows']} rows" for d, s in summary["datasets"].items())
    print(f"wrote synthetic datasets ({args.preset}, seed {args.seed}) to {args.out}: {counts}")
    print(
        f"broken inputs planted: {len(summary['broken'])}; raw videos: {len(summary['raw_videos'])}"
    )
    return 0


def write_synthetic(
    out: str | Path, preset: str = "demo", seed: int = 0, progress: bool = True
) -> dict:
    """Write every dataset under `out` and return the summary that is saved as `out/synth.json`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synth preset {preset!r}; expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    out = Path(out)
    _prepare(out)
    writer = _Writer(out, p, seed)
    total = writer.total_units()
    with tqdm(
        total=total, desc=f"synth {preset}", unit="clip", file=sys.stderr, disable=not progress
    ) as bar:
        writer.bar = bar
        datasets = {
            "dfew": writer.dfew(),
            "mafw": writer.mafw(),
            "ferv39k": writer.ferv39k(),
            "affectnet": writer.affectnet(),
            "voxceleb2": writer.voxceleb2(),
        }
        raw = writer.raw_videos()
    summary = {
        "generator": f"unilearn {__version__} synth",
        "synthetic": True,
        "preset": preset,
        "seed": seed,
        "settings": asdict(p),
        "roots": ROOTS,
        "datasets": datasets,
        "broken": writer.broken,
        "raw_videos": raw,
    }
    write_text(out / SUMMARY, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def read_summary(root: str | Path) -> dict | None:
    """The synth summary of a synthetic tree, found at `root` or its parent (a dataset root)."""
    root = Path(root)
    for candidate in (root / SUMMARY, root.parent / SUMMARY):
        if candidate.is_file():
            with open(candidate, encoding="utf-8") as f:
                return json.load(f)
    return None


def _prepare(out: Path) -> None:
    """Start from a clean tree; refuse to write over a directory that synth did not make."""
    if out.exists() and any(out.iterdir()):
        if not (out / SUMMARY).exists() and not all(
            child.name in {*ROOTS.values(), RAW_VIDEOS} for child in out.iterdir()
        ):
            raise FileExistsError(
                f"{out} is not empty and holds no {SUMMARY}: refusing to write synthetic data over it"
            )
        (out / SUMMARY).unlink(
            missing_ok=True
        )  # first, so an interrupted re-run is never "complete"
        for name in {*ROOTS.values(), RAW_VIDEOS}:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """One independent stream per clip: a clip's pixels depend only on (seed, dataset, index)."""
    return np.random.default_rng([seed, _DATASET_CODES[dataset], index])


@dataclass(frozen=True)
class _ClipPlan:
    emotion: str
    identity: Identity
    pose: Pose
    intensity: float
    start: float
    speed: float
    phase: float


def _plan(
    rng: np.random.Generator,
    emotion: str,
    width: int,
    height: int,
    face_fraction: tuple[float, float],
    cast: list[Identity] | None = None,
) -> _ClipPlan:
    if cast:  # an actor of the pool, in this clip's own blinks and gaze
        identity = replace(
            cast[int(rng.integers(len(cast)))],
            gaze=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2))),
            blinks=tuple(rng.uniform(0, 1, rng.integers(0, 3)).tolist()),
        )
    else:
        identity = sample_identity(rng)
    side = min(width, height)
    pose = Pose(
        cx=width * 0.5 + side * rng.uniform(-0.05, 0.05),
        cy=height * 0.5 + side * rng.uniform(-0.03, 0.06),
        half_width=side * rng.uniform(*face_fraction),
        roll=float(rng.uniform(-6, 6)),
    )
    return _ClipPlan(
        emotion,
        identity,
        pose,
        intensity=float(rng.uniform(0.75, 1.0)),
        start=float(rng.uniform(0.0, 0.3)),
        speed=float(rng.uniform(0.7, 1.3)),
        phase=float(rng.uniform(0, 1)),
    )


def render_clip(
    rng: np.random.Generator,
    plan: _ClipPlan,
    n_frames: int,
    width: int,
    height: int,
    talk: float = 0.0,
) -> Iterator[np.ndarray]:
    """The frames (uint8 RGB) of one clip of `plan.emotion`."""
    background = render_background(height, width, plan.identity)
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        state = expression_at(
            plan.emotion,
            t,
            intensity=plan.intensity,
            start=plan.start,
            speed=plan.speed,
            phase=plan.phase,
            identity=plan.identity,
            pose=plan.pose,
            talk=talk,
        )
        yield render(background, plan.identity, state, rng)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """H.264 mp4 as VoxCeleb2 distributes it; single-threaded so the bytes are reproducible."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # single-threaded and without x264's lookahead / macroblock tree, whose output changed
        # with the process's heap state: the same frames must always give the same bytes
        stream.options = {
            "crf": "20",
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "no-mbtree=1:rc-lookahead=0:sync-lookahead=0",
        }
        stream.codec_context.thread_count = 1
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _fold_assignment(rng: np.random.Generator, labels: list[int], n_folds: int = 5) -> list[int]:
    """Test fold (1..n) per clip, stratified: each class spread evenly over the folds."""
    folds = [0] * len(labels)
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[i] = j % n_folds + 1
    return folds


class _Writer:
    """Writes one dataset at a time; `broken` collects the planted bad inputs."""

    def __init__(self, out: Path, preset: Preset, seed: int):
        self.out, self.p, self.seed = out, preset, seed
        self.broken: list[dict] = []
        self.bar: tqdm | None = None
        cast_rng = np.random.default_rng([seed, 0, 1])
        self.cast = [sample_identity(cast_rng) for _ in range(preset.actors)]

    def total_units(self) -> int:
        p = self.p
        n_aff = (p.affectnet_train_per_class + p.affectnet_val_per_class) * 8
        return (
            7 * p.dfew_per_class
            + 11 * p.mafw_per_class
            + 7 * p.ferv39k_per_class
            + n_aff
            + p.vox_clips
            + p.raw_videos
            + 1
        )

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _frames_folder(
        self, folder: Path, rng: np.random.Generator, emotion: str, n_frames: int
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        plan = _plan(rng, emotion, self.p.size, self.p.size, (0.32, 0.36), self.cast)
        for i, rgb in enumerate(
            render_clip(rng, plan, n_frames, self.p.size, self.p.size), start=1
        ):
            _write_jpeg(folder / f"{i:05d}.jpg", rgb, self.p.jpeg_quality)

    def _labeled_clips(self, dataset: str, classes: tuple[str, ...], per_class: int, id_range: int):
        """(clip id, class index, rng) for a class-balanced set of clips with unique random ids."""
        order = np.random.default_rng([self.seed, _DATASET_CODES[dataset], 0, 0])
        n = len(classes) * per_class
        labels = [i % len(classes) for i in range(n)]
        order.shuffle(labels)
        ids = sorted(order.choice(np.arange(1, id_range + 1), size=n + 4, replace=False).tolist())
        return ids, labels, order

    # DFEW: Clip/jpg_256/<5-digit id>/*.jpg + EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv
    def dfew(self) -> dict:
        root = self.out / ROOTS["dfew"]
        ids, labels, order = self._labeled_clips("dfew", DFEW.classes, self.p.dfew_per_class, 16372)
        spare = ids[len(labels) :]
        ids = ids[: len(labels)]
        folds = _fold_assignment(order, labels)
        for k, (cid, y) in enumerate(zip(ids, labels)):
            rng = _rng(self.seed, "dfew", k)
            n = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(root / "Clip" / "jpg_256" / f"{cid:05d}", rng, DFEW.classes[y], n)
            self._tick()
        entries = list(zip(ids, labels, folds))
        if self.p.broken:
            # a clip the split files list whose frame folder is empty
            empty = spare[0]
            (root / "Clip" / "jpg_256" / f"{empty:05d}").mkdir(parents=True)
            entries.append((empty, 0, 1))
            self.broken.append(
                {
                    "dataset": "dfew",
                    "clip_id": f"{empty:05d}",
                    "problem": "empty frame folder",
                    "reason_code": "empty_clip",
                }
            )
        for fold in range(1, 6):
            for split in ("train", "test"):
                rows = sorted((cid, y) for cid, y, f in entries if (f == fold) == (split == "test"))
                lines = ["video_name,label"] + [f"{cid:05d},{y + 1}" for cid, y in rows]
                path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, "\n".join(lines) + "\n")
        return {
            "root": ROOTS["dfew"],
            "clips": len(ids),
            "rows": 5 * len(entries),
            "classes": list(DFEW.classes),
        }

    # MAFW: data/frames/<5-digit id>/*.jpg + split/single/no_caption/set_k/{train,test}.txt
    def mafw(self) -> dict:
        root = self.out / ROOTS["mafw"]
        ids, labels, order = self._labeled_clips("mafw", MAFW.classes, self.p.mafw_per_class, 10045)
        spare = ids[len(labels) :]
        ids = ids[: len(labels)]
        folds = _fold_assignment(order, labels)
        for k, (cid, y) in enumerate(zip(ids, labels)):
            rng = _rng(self.seed, "mafw", k)
            n = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(root / "data" / "frames" / f"{cid:05d}", rng, MAFW.classes[y], n)
            self._tick()
        entries = list(zip(ids, labels, folds))
        if self.p.broken:
            # a split row naming a clip that does not exist
            missing = spare[0]
            entries.append((missing, 3, 2))
            self.broken.append(
                {
                    "dataset": "mafw",
                    "clip_id": f"{missing:05d}",
                    "problem": "split row names a missing clip",
                    "reason_code": "missing_clip",
                }
            )
        for fold in range(1, 6):
            for split in ("train", "test"):
                rows = sorted((cid, y) for cid, y, f in entries if (f == fold) == (split == "test"))
                lines = [f"{cid:05d}.mp4 {MAFW.classes[y]}" for cid, y in rows]
                path = root / "split" / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, "\n".join(lines) + "\n")
        return {
            "root": ROOTS["mafw"],
            "clips": len(ids),
            "rows": 5 * len(entries),
            "classes": list(MAFW.classes),
        }

    # FERV39K: 2_ClipsforFaceCrop/<scene>/<Emotion>/<4-digit id>/*.jpg + 4_setups/All_scenes/*.csv
    def ferv39k(self) -> dict:
        root = self.out / ROOTS["ferv39k"]
        order = np.random.default_rng([self.seed, _DATASET_CODES["ferv39k"], 0, 0])
        n = 7 * self.p.ferv39k_per_class
        labels = [i % 7 for i in range(n)]
        order.shuffle(labels)
        test = [False] * n
        for c in range(7):
            members = [i for i, y in enumerate(labels) if y == c]
            for j in members[: max(1, len(members) // 5)]:
                test[j] = True
        counters: dict[tuple[str, str], int] = {}
        lines = {"train": [], "test": []}
        for k, y in enumerate(labels):
            scene = FERV39K_SCENES[int(order.integers(len(FERV39K_SCENES)))]
            emotion = FERV39K.classes[y].capitalize()
            counters[scene, emotion] = counters.get((scene, emotion), 0) + 1
            clip_id = f"{scene}/{emotion}/{counters[scene, emotion]:04d}"
            rng = _rng(self.seed, "ferv39k", k)
            nf = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(root / "2_ClipsforFaceCrop" / clip_id, rng, FERV39K.classes[y], nf)
            lines["test" if test[k] else "train"].append(f"{clip_id} {emotion}")
            self._tick()
        if self.p.broken:
            # a clip whose label is outside the 7 classes (it has frames; the label is the problem)
            clip_id = f"{FERV39K_SCENES[0]}/Contempt/0001"
            rng = _rng(self.seed, "ferv39k", n)
            self._frames_folder(
                root / "2_ClipsforFaceCrop" / clip_id, rng, "contempt", self.p.frames[0]
            )
            lines["train"].append(f"{clip_id} Contempt")
            self.broken.append(
                {
                    "dataset": "ferv39k",
                    "clip_id": clip_id,
                    "problem": "label outside the class set",
                    "reason_code": "unknown_label",
                }
            )
        for split, name in (("train", "train_All.csv"), ("test", "test_All.csv")):
            path = root / "4_setups" / "All_scenes" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, "\n".join(sorted(lines[split])) + "\n")
        return {
            "root": ROOTS["ferv39k"],
            "clips": n,
            "rows": len(lines["train"]) + len(lines["test"]),
            "classes": list(FERV39K.classes),
        }

    # AffectNet: Manually_Annotated_Images/<subdir>/<hash>.jpg + Manually_Annotated_file_lists/*.csv
    def affectnet(self) -> dict:
        root = self.out / ROOTS["affectnet"]
        size = self.p.affectnet_size
        header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
        rows: dict[str, list[str]] = {"training": [], "validation": []}
        items = [("training", c) for c in range(8) for _ in range(self.p.affectnet_train_per_class)]
        items += [
            ("validation", c) for c in range(8) for _ in range(self.p.affectnet_val_per_class)
        ]
        if self.p.broken:
            # AffectNet's own non-emotion codes: 8 none, 9 uncertain, 10 no face
            items += [("training", 8), ("training", 9), ("training", 10)]
        for k, (table, code) in enumerate(items):
            rng = _rng(self.seed, "affectnet", k)
            digest = hashlib.sha1(f"{self.seed}/{k}".encode()).hexdigest()
            rel = f"{int(digest[:6], 16) % 1000}/{digest}.jpg"
            emotion = AFFECTNET.classes[code] if code < 8 else "neutral"
            plan = _plan(rng, emotion, size, size, (0.24, 0.3), self.cast)
            background = render_background(size, size, plan.identity)
            if code == 10:
                rgb = np.clip(background + 0.5, 0, 255).astype(np.uint8)
            else:
                state = expression_at(
                    emotion,
                    1.0,
                    intensity=plan.intensity,
                    start=0.0,
                    speed=1.0,
                    phase=plan.phase,
                    identity=plan.identity,
                    pose=plan.pose,
                )
                rgb = render(background, plan.identity, state, rng)
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_jpeg(path, rgb, self.p.jpeg_quality)
            hw, fa = plan.pose.half_width, plan.identity.aspect
            x0 = max(0, int(plan.pose.cx - 1.15 * hw))
            y0 = max(0, int(plan.pose.cy - 1.35 * hw * fa))
            box = (
                x0,
                y0,
                min(size, int(plan.pose.cx + 1.15 * hw)) - x0,
                min(size, int(plan.pose.cy + 1.1 * hw * fa)) - y0,
            )
            landmarks = ";".join(
                f"{v:.2f}"
                for v in (
                    plan.pose.cx - 0.44 * hw,
                    plan.pose.cy - 0.16 * hw * fa,
                    plan.pose.cx + 0.44 * hw,
                    plan.pose.cy - 0.16 * hw * fa,
                    plan.pose.cx,
                    plan.pose.cy + 0.2 * hw * fa,
                )
            )
            if code < 8:
                v, a = _VALENCE_AROUSAL[canonical_emotion(AFFECTNET.classes[code])]
                v, a = (
                    np.clip(v + rng.normal(0, 0.1), -1, 1),
                    np.clip(a + rng.normal(0, 0.1), -1, 1),
                )
            else:
                v = a = -2.0  # how AffectNet marks valence/arousal of its non-emotion codes
                self.broken.append(
                    {
                        "dataset": "affectnet",
                        "clip_id": Path(rel).stem,
                        "problem": f"expression {code} is not an emotion class",
                        "reason_code": "not_an_emotion",
                    }
                )
            rows[table].append(
                f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{landmarks},{code},{v:.6f},{a:.6f}"
            )
            self._tick()
        lists = root / "Manually_Annotated_file_lists"
        lists.mkdir(parents=True, exist_ok=True)
        write_text(lists / "training.csv", "\n".join([header] + rows["training"]) + "\n")
        # The real validation.csv has no header row; readers must cope, so this one has none either.
        write_text(lists / "validation.csv", "\n".join(rows["validation"]) + "\n")
        return {
            "root": ROOTS["affectnet"],
            "clips": len(items),
            "rows": len(items),
            "classes": list(AFFECTNET.classes),
        }

    # VoxCeleb2: dev/mp4/<speaker id>/<youtube id>/<5-digit>.mp4 (unlabeled, talking faces)
    def voxceleb2(self) -> dict:
        root = self.out / ROOTS["voxceleb2"] / "dev" / "mp4"
        order = np.random.default_rng([self.seed, _DATASET_CODES["voxceleb2"], 0, 0])
        alphabet = np.array(
            list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
        )
        n_speakers = max(2, self.p.vox_clips // 5)
        speakers = [
            f"id{s:05d}"
            for s in sorted(order.choice(np.arange(1, 9999), n_speakers, replace=False).tolist())
        ]
        youtube = {s: ["".join(order.choice(alphabet, 11)) for _ in range(2)] for s in speakers}
        paths = []
        size = self.p.vox_size
        basic = ("neutral", "happy", "sad", "surprise", "angry", "neutral", "neutral")
        for k in range(self.p.vox_clips):
            speaker = speakers[k % n_speakers]
            yt = youtube[speaker][(k // n_speakers) % 2]
            index = k // (2 * n_speakers) + 1
            rel = Path(speaker) / yt / f"{index:05d}.mp4"
            rng = _rng(self.seed, "voxceleb2", k)
            plan = _plan(rng, basic[int(rng.integers(len(basic)))], size, size, (0.26, 0.32))
            plan = _ClipPlan(
                plan.emotion,
                plan.identity,
                plan.pose,
                plan.intensity * 0.6,
                plan.start,
                plan.speed,
                plan.phase,
            )
            write_mp4(
                root / rel, list(render_clip(rng, plan, self.p.vox_frames, size, size, talk=0.4))
            )
            paths.append(rel)
            self._tick()
        if self.p.broken:
            # a truncated download: the mp4's index (moov atom, written last) is cut off
            src = root / paths[0]
            rel = paths[0].parent / f"{int(paths[0].stem) + 500:05d}.mp4"
            data = src.read_bytes()
            (root / rel).write_bytes(data[: len(data) * 2 // 5])
            self.broken.append(
                {
                    "dataset": "voxceleb2",
                    "clip_id": str(rel.with_suffix("")),
                    "problem": "truncated mp4",
                    "reason_code": "unreadable_video",
                }
            )
            paths.append(rel)
        return {"root": ROOTS["voxceleb2"], "clips": len(paths), "rows": len(paths), "classes": []}

    # raw scene videos: a face somewhere in a larger, cluttered frame, moving; one without a face
    def raw_videos(self) -> list[dict]:
        folder = self.out / RAW_VIDEOS
        folder.mkdir(parents=True, exist_ok=True)
        w, h = self.p.raw_size
        emotions = ("happy", "sad", "angry", "surprise", "neutral", "fear")
        index = ["file,emotion,has_face,frames,width,height"]
        videos = []
        for k in range(self.p.raw_videos + 1):
            rng = _rng(self.seed, "raw", k)
            has_face = k < self.p.raw_videos
            emotion = emotions[k % len(emotions)] if has_face else ""
            plan = _plan(rng, emotion or "neutral", w, h, (0.15, 0.18))
            # Real detectors (MTCNN, Haar) find these drawn faces most reliably on lighter skin with
            # moderate expressions; the raw videos exist to exercise detection, so they use those.
            lighter = _SKIN_FOR_DETECTION[k % len(_SKIN_FOR_DETECTION)]
            plan = replace(plan, identity=replace(plan.identity, skin=lighter), intensity=0.7)
            background = render_background(h, w, plan.identity)
            frames = []
            x0, x1 = w * rng.uniform(0.3, 0.45), w * rng.uniform(0.55, 0.7)
            for i in range(self.p.raw_frames):
                t = i / max(self.p.raw_frames - 1, 1)
                if not has_face:
                    noisy = background + rng.normal(0, 2.0, background.shape)
                    frames.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
                    continue
                pose = Pose(
                    x0 + (x1 - x0) * t,
                    plan.pose.cy,
                    plan.pose.half_width * (1 + 0.1 * t),
                    plan.pose.roll * 0.5,
                )
                state = expression_at(
                    emotion,
                    t,
                    intensity=plan.intensity,
                    start=plan.start,
                    speed=plan.speed,
                    phase=plan.phase,
                    identity=plan.identity,
                    pose=pose,
                )
                frames.append(render(background, plan.identity, state, rng))
            name = f"scene_{k:02d}_{emotion}.mp4" if has_face else "no_face.mp4"
            write_mp4(folder / name, frames)
            index.append(f"{name},{emotion},{int(has_face)},{len(frames)},{w},{h}")
            videos.append(
                {
                    "file": f"{RAW_VIDEOS}/{name}",
                    "emotion": emotion,
                    "has_face": has_face,
                    "frames": len(frames),
                    "width": w,
                    "height": h,
                }
            )
            self._tick()
        write_text(folder / "index.csv", "\n".join(index) + "\n")
        return videos
