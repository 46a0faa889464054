"""The synthetic datasets, each written in the layout its reader reads (`unilearn.data.native`):
folder names, split-file names and columns, label spellings and folds come from the readers and
the catalogue, so a synthetic tree and a real one are read by the same code. A `Preset` says how
much of each to write (`PRESETS`); `DatasetWriter` writes one dataset per method and plants the
broken inputs the quarantine path must catch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unilearn.atomic import write_text
from unilearn.catalogue import (
    AFFECTNET,
    DATASETS,
    DFEW,
    FERV39K,
    FOLDS,
    MAFW,
    canonical_emotion,
    get_label_set,
)
from unilearn.data.native import affectnet as affectnet_reader
from unilearn.data.native import dfew as dfew_reader
from unilearn.data.native import ferv39k as ferv39k_reader
from unilearn.data.native import mafw as mafw_reader
from unilearn.data.native import voxceleb2 as voxceleb2_reader
from unilearn.data.native.common import SPLITS
from unilearn.data.synth_clips import (
    DATASET_CODES,
    clip_rng,
    plan_clip,
    render_clip,
    write_jpeg,
    write_mp4,
)
from unilearn.data.synth_face import Pose, render, render_background, sample_identity

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


def _classes(dataset: str) -> tuple[str, ...]:
    label_set = DATASETS[dataset].label_set
    return get_label_set(label_set).classes if label_set else ()


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

    def _random_clip(self, folder: Path, dataset: str, k: int, emotion: str) -> None:
        """Clip `k` of `dataset`: a frame folder of `preset.frames` (min, max) frames."""
        rng = clip_rng(self.seed, dataset, k)
        n = int(rng.integers(self.p.frames[0], self.p.frames[1] + 1))
        self._frames_folder(folder, rng, emotion, n)
        self._tick()

    def _folded_clips(self, dataset: str, per_class: int, id_range: int, frames: str):
        """A class-balanced set of clips with unique random 5-digit ids under `frames`, each in
        the test split of one fold: `(entries [(id, class, test fold)], spare ids)`."""
        classes = _classes(dataset)
        order = np.random.default_rng([self.seed, DATASET_CODES[dataset], 0, 0])
        n = len(classes) * per_class
        labels = [i % len(classes) for i in range(n)]
        order.shuffle(labels)
        ids = sorted(order.choice(np.arange(1, id_range + 1), size=n + 4, replace=False).tolist())
        folds = _fold_assignment(order, labels, FOLDS[dataset])
        root = self.out / ROOTS[dataset]
        for k, (cid, y) in enumerate(zip(ids, labels)):
            self._random_clip(root / frames / f"{cid:05d}", dataset, k, classes[y])
        return list(zip(ids, labels, folds)), ids[n:]

    def _fold_splits(self, dataset: str, entries, split_file, line, header: str | None) -> None:
        """Each fold's train and test split files: `line(id, class)` per row, sorted."""
        for fold in FOLDS[dataset]:
            for split in SPLITS:
                rows = sorted((cid, y) for cid, y, f in entries if (f == fold) == (split == "test"))
                lines = ([header] if header else []) + [line(cid, y) for cid, y in rows]
                path = self.out / ROOTS[dataset] / split_file(split, fold)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, "\n".join(lines) + "\n")

    def _plant(self, dataset: str, clip_id: str, problem: str, reason_code: str) -> None:
        """Record a broken input written on purpose (the quarantine must name `reason_code`)."""
        self.broken.append(
            {"dataset": dataset, "clip_id": clip_id, "problem": problem, "reason_code": reason_code}
        )

    def _summary(self, dataset: str, clips: int, rows: int) -> dict:
        return {
            "root": ROOTS[dataset],
            "clips": clips,
            "rows": rows,
            "classes": list(_classes(dataset)),
        }

    # DFEW: Clip/jpg_256/<5-digit id>/*.jpg + EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv
    def dfew(self) -> dict:
        frames_dir = dfew_reader.FRAME_DIRS[0]  # the original frames
        native = {i: name for name, i in DFEW.native.items()}
        entries, spare = self._folded_clips("dfew", self.p.dfew_per_class, 16372, frames_dir)
        clips = len(entries)
        if self.p.broken:  # a clip the split files list whose frame folder is empty
            (self.out / ROOTS["dfew"] / frames_dir / f"{spare[0]:05d}").mkdir(parents=True)
            entries.append((spare[0], 0, 1))
            self._plant("dfew", f"{spare[0]:05d}", "empty frame folder", "empty_clip")
        self._fold_splits(
            "dfew",
            entries,
            dfew_reader.split_file,
            lambda cid, y: f"{cid:05d},{native[y]}",
            ",".join(dfew_reader.SPLIT_HEADER),
        )
        return self._summary("dfew", clips, len(FOLDS["dfew"]) * len(entries))

    # MAFW: data/frames/<5-digit id>/*.jpg + split/single/no_caption/set_k/{train,test}.txt
    def mafw(self) -> dict:
        entries, spare = self._folded_clips(
            "mafw", self.p.mafw_per_class, 10045, mafw_reader.FRAMES_DIR
        )
        clips = len(entries)
        if self.p.broken:  # a split row naming a clip that does not exist
            entries.append((spare[0], 3, 2))
            self._plant("mafw", f"{spare[0]:05d}", "split row names a missing clip", "missing_clip")
        self._fold_splits(
            "mafw",
            entries,
            mafw_reader.split_file,
            lambda cid, y: f"{cid:05d}.mp4 {MAFW.classes[y]}",
            None,
        )
        return self._summary("mafw", clips, len(FOLDS["mafw"]) * len(entries))

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
            folder = root / ferv39k_reader.FRAMES_DIR / clip_id
            self._random_clip(folder, "ferv39k", k, FERV39K.classes[y])
            lines["test" if test[k] else "train"].append(f"{clip_id} {emotion}")
        if self.p.broken:
            # a clip whose label is outside the 7 classes (it has frames; the label is the problem)
            clip_id = f"{FERV39K_SCENES[0]}/Contempt/0001"
            rng = clip_rng(self.seed, "ferv39k", n)
            self._frames_folder(
                root / ferv39k_reader.FRAMES_DIR / clip_id, rng, "contempt", self.p.frames[0]
            )
            lines["train"].append(f"{clip_id} Contempt")
            self._plant("ferv39k", clip_id, "label outside the class set", "unknown_label")
        for split, name in ferv39k_reader.SPLIT_FILES.items():
            path = root / ferv39k_reader.SPLIT_DIR / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, "\n".join(sorted(lines[split])) + "\n")
        return self._summary("ferv39k", n, len(lines["train"]) + len(lines["test"]))

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
                state = replace(plan, start=0.0, speed=1.0).face_at(1.0)  # the apex
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
                problem = f"expression {code} is not an emotion class"
                self._plant("affectnet", Path(rel).stem, problem, "not_an_emotion")
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
        return self._summary("affectnet", len(items), len(items))

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
            plan = replace(plan, intensity=plan.intensity * 0.6)
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
            self._plant("voxceleb2", str(rel.with_suffix("")), "truncated mp4", "unreadable_video")
            paths.append(rel)
        return self._summary("voxceleb2", len(paths), len(paths))

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
                frames.append(render(background, plan.identity, plan.face_at(t, pose), rng))
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
