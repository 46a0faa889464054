"""The synthetic datasets, each written in the layout its reader reads (`unilearn.data.native`):
folder names, split-file names and columns, label spellings and folds come from the readers and
the catalogue, so a synthetic tree and a real one are read by the same code. `DatasetWriter`
writes one dataset per method and plants the broken inputs the quarantine path must catch.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from unilearn.atomic import write_text
from unilearn.catalogue import AFFECTNET, DATASETS, DFEW, FERV39K, FOLDS, MAFW, canonical_emotion
from unilearn.data.native import affectnet as affectnet_reader
from unilearn.data.native import dfew as dfew_reader
from unilearn.data.native import ferv39k as ferv39k_reader
from unilearn.data.native import mafw as mafw_reader
from unilearn.data.native import voxceleb2 as voxceleb2_reader
from unilearn.data.native.common import SPLITS
from unilearn.data.synth_clips import (
    DATASET_CODES,
    ClipPlan,
    clip_rng,
    plan_clip,
    render_clip,
    write_jpeg,
    write_mp4,
)
from unilearn.data.synth_face import Pose, expression_at, render, render_background, sample_identity

if TYPE_CHECKING:
    from unilearn.data.synth import Preset

# Directory of each dataset under DIR, as the datasets name their own top folder.
ROOTS: dict[str, str] = {name: d.folder for name, d in DATASETS.items()}
RAW_VIDEOS = "raw_videos"

FERV39K_SCENES = ("CrimeDrama", "DailyLife", "Interview", "TalkShow")
_SKIN_FOR_DETECTION = (
    (238.0, 198.0, 166.0),
    (224.0, 172.0, 140.0),
    (255.0, 224.0, 196.0),
    (198.0, 144.0, 110.0),
)
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


def _fold_assignment(
    rng: np.random.Generator, labels: list[int], folds: tuple[int, ...]
) -> list[int]:
    """The test fold (one of `folds`) of each clip, stratified: each class spread evenly over the
    folds."""
    test_fold = [0] * len(labels)
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(members)
        for j, i in enumerate(members):
            test_fold[i] = folds[j % len(folds)]
    return test_fold


class DatasetWriter:
    """Writes one dataset at a time, each in its reader's layout (`unilearn.data.native`);
    `broken` collects the planted bad inputs."""

    def __init__(self, out: Path, preset: Preset, seed: int):
        self.out, self.p, self.seed = out, preset, seed
        self.broken: list[dict] = []
        self.bar: tqdm | None = None
        cast_rng = np.random.default_rng([seed, 0, 1])
        self.cast = [sample_identity(cast_rng) for _ in range(preset.actors)]

    def total_units(self) -> int:
        p = self.p
        n_aff = (p.affectnet_train_per_class + p.affectnet_val_per_class) * len(AFFECTNET.classes)
        return (
            len(DFEW.classes) * p.dfew_per_class
            + len(MAFW.classes) * p.mafw_per_class
            + len(FERV39K.classes) * p.ferv39k_per_class
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
        plan = plan_clip(rng, emotion, self.p.size, self.p.size, (0.32, 0.36), self.cast)
        for i, rgb in enumerate(
            render_clip(rng, plan, n_frames, self.p.size, self.p.size), start=1
        ):
            write_jpeg(folder / f"{i:05d}.jpg", rgb, self.p.jpeg_quality)

    def _labeled_clips(self, dataset: str, classes: tuple[str, ...], per_class: int, id_range: int):
        """(clip id, class index, rng) for a class-balanced set of clips with unique random ids."""
        order = np.random.default_rng([self.seed, DATASET_CODES[dataset], 0, 0])
        n = len(classes) * per_class
        labels = [i % len(classes) for i in range(n)]
        order.shuffle(labels)
        ids = sorted(order.choice(np.arange(1, id_range + 1), size=n + 4, replace=False).tolist())
        return ids, labels, order

    # DFEW: Clip/jpg_256/<5-digit id>/*.jpg + EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv
    def dfew(self) -> dict:
        frames_dir = dfew_reader.FRAME_DIRS[0]  # the original frames
        native = {i: name for name, i in DFEW.native.items()}
        root = self.out / ROOTS["dfew"]
        ids, labels, order = self._labeled_clips("dfew", DFEW.classes, self.p.dfew_per_class, 16372)
        spare = ids[len(labels) :]
        ids = ids[: len(labels)]
        folds = _fold_assignment(order, labels, FOLDS["dfew"])
        for k, (cid, y) in enumerate(zip(ids, labels)):
            rng = clip_rng(self.seed, "dfew", k)
            n = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(root / frames_dir / f"{cid:05d}", rng, DFEW.classes[y], n)
            self._tick()
        entries = list(zip(ids, labels, folds))
        if self.p.broken:
            # a clip the split files list whose frame folder is empty
            empty = spare[0]
            (root / frames_dir / f"{empty:05d}").mkdir(parents=True)
            entries.append((empty, 0, 1))
            self.broken.append(
                {
                    "dataset": "dfew",
                    "clip_id": f"{empty:05d}",
                    "problem": "empty frame folder",
                    "reason_code": "empty_clip",
                }
            )
        for fold in FOLDS["dfew"]:
            for split in SPLITS:
                rows = sorted((cid, y) for cid, y, f in entries if (f == fold) == (split == "test"))
                header = ",".join(dfew_reader.SPLIT_HEADER)
                lines = [header] + [f"{cid:05d},{native[y]}" for cid, y in rows]
                path = root / dfew_reader.split_file(split, fold)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, "\n".join(lines) + "\n")
        return {
            "root": ROOTS["dfew"],
            "clips": len(ids),
            "rows": len(FOLDS["dfew"]) * len(entries),
            "classes": list(DFEW.classes),
        }

    # MAFW: data/frames/<5-digit id>/*.jpg + split/single/no_caption/set_k/{train,test}.txt
    def mafw(self) -> dict:
        root = self.out / ROOTS["mafw"]
        ids, labels, order = self._labeled_clips("mafw", MAFW.classes, self.p.mafw_per_class, 10045)
        spare = ids[len(labels) :]
        ids = ids[: len(labels)]
        folds = _fold_assignment(order, labels, FOLDS["mafw"])
        for k, (cid, y) in enumerate(zip(ids, labels)):
            rng = clip_rng(self.seed, "mafw", k)
            n = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(
                root / mafw_reader.FRAMES_DIR / f"{cid:05d}", rng, MAFW.classes[y], n
            )
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
        for fold in FOLDS["mafw"]:
            for split in SPLITS:
                rows = sorted((cid, y) for cid, y, f in entries if (f == fold) == (split == "test"))
                lines = [f"{cid:05d}.mp4 {MAFW.classes[y]}" for cid, y in rows]
                path = root / mafw_reader.split_file(split, fold)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, "\n".join(lines) + "\n")
        return {
            "root": ROOTS["mafw"],
            "clips": len(ids),
            "rows": len(FOLDS["mafw"]) * len(entries),
            "classes": list(MAFW.classes),
        }

    # FERV39K: 2_ClipsforFaceCrop/<scene>/<Emotion>/<4-digit id>/*.jpg + 4_setups/All_scenes/*.csv
    def ferv39k(self) -> dict:
        root = self.out / ROOTS["ferv39k"]
        native = {i: name for name, i in FERV39K.native.items()}  # the emotion folder names
        order = np.random.default_rng([self.seed, DATASET_CODES["ferv39k"], 0, 0])
        n_classes = len(FERV39K.classes)
        n = n_classes * self.p.ferv39k_per_class
        labels = [i % n_classes for i in range(n)]
        order.shuffle(labels)
        test = [False] * n
        for c in range(n_classes):
            members = [i for i, y in enumerate(labels) if y == c]
            for j in members[: max(1, len(members) // 5)]:
                test[j] = True
        counters: dict[tuple[str, str], int] = {}
        lines = {"train": [], "test": []}
        for k, y in enumerate(labels):
            scene = FERV39K_SCENES[int(order.integers(len(FERV39K_SCENES)))]
            emotion = native[y]
            counters[scene, emotion] = counters.get((scene, emotion), 0) + 1
            clip_id = f"{scene}/{emotion}/{counters[scene, emotion]:04d}"
            rng = clip_rng(self.seed, "ferv39k", k)
            nf = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
            self._frames_folder(
                root / ferv39k_reader.FRAMES_DIR / clip_id, rng, FERV39K.classes[y], nf
            )
            lines["test" if test[k] else "train"].append(f"{clip_id} {emotion}")
            self._tick()
        if self.p.broken:
            # a clip whose label is outside the 7 classes (it has frames; the label is the problem)
            clip_id = f"{FERV39K_SCENES[0]}/Contempt/0001"
            rng = clip_rng(self.seed, "ferv39k", n)
            self._frames_folder(
                root / ferv39k_reader.FRAMES_DIR / clip_id, rng, "contempt", self.p.frames[0]
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
        for split, name in ferv39k_reader.SPLIT_FILES.items():
            path = root / ferv39k_reader.SPLIT_DIR / name
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
        n_classes = len(AFFECTNET.classes)  # expression codes 0-7
        per_split = {
            "train": self.p.affectnet_train_per_class,
            "test": self.p.affectnet_val_per_class,
        }
        rows: dict[str, list[str]] = {split: [] for split in affectnet_reader.TABLES}
        items = [
            (split, c)
            for split in SPLITS
            for c in range(n_classes)
            for _ in range(per_split[split])
        ]
        if self.p.broken:
            # AffectNet's own non-emotion codes: 8 none, 9 uncertain, 10 no face
            items += [("train", code) for code in affectnet_reader.NON_EMOTIONS]
        for k, (split, code) in enumerate(items):
            rng = clip_rng(self.seed, "affectnet", k)
            digest = hashlib.sha1(f"{self.seed}/{k}".encode()).hexdigest()
            rel = f"{int(digest[:6], 16) % 1000}/{digest}.jpg"
            emotion = AFFECTNET.classes[code] if code < n_classes else "neutral"
            plan = plan_clip(rng, emotion, size, size, (0.24, 0.3), self.cast)
            background = render_background(size, size, plan.identity)
            if affectnet_reader.NON_EMOTIONS.get(code) == "no face":
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
            path = root / affectnet_reader.IMAGE_DIRS[0] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jpeg(path, rgb, self.p.jpeg_quality)
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
            if code < n_classes:
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
            rows[split].append(
                f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{landmarks},{code},{v:.6f},{a:.6f}"
            )
            self._tick()
        lists = root / affectnet_reader.LIST_DIRS[0]
        lists.mkdir(parents=True, exist_ok=True)
        header = ",".join(affectnet_reader.HEADER)
        write_text(
            lists / affectnet_reader.TABLES["train"], "\n".join([header] + rows["train"]) + "\n"
        )
        # The real validation.csv has no header row; readers must cope, so this one has none either.
        write_text(lists / affectnet_reader.TABLES["test"], "\n".join(rows["test"]) + "\n")
        return {
            "root": ROOTS["affectnet"],
            "clips": len(items),
            "rows": len(items),
            "classes": list(AFFECTNET.classes),
        }

    # VoxCeleb2: dev/mp4/<speaker id>/<youtube id>/<5-digit>.mp4 (unlabeled, talking faces)
    def voxceleb2(self) -> dict:
        root = self.out / ROOTS["voxceleb2"] / voxceleb2_reader.VIDEO_DIR
        order = np.random.default_rng([self.seed, DATASET_CODES["voxceleb2"], 0, 0])
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
            rng = clip_rng(self.seed, "voxceleb2", k)
            plan = plan_clip(rng, basic[int(rng.integers(len(basic)))], size, size, (0.26, 0.32))
            plan = ClipPlan(
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
            rng = clip_rng(self.seed, "raw", k)
            has_face = k < self.p.raw_videos
            emotion = emotions[k % len(emotions)] if has_face else ""
            plan = plan_clip(rng, emotion or "neutral", w, h, (0.15, 0.18))
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
