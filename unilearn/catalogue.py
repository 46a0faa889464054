"""The domain's facts, each written once: datasets (native folder, media, label set, folds, store
table, display name), label sets, pre-training modes and their sources, model sizes, MoAE
positions, tasks, input normalisation and the SFER RandAugment policy.

Plain Python on purpose (no torch, no pydantic): the config, the model registry, the readers, the
synthetic-data writer, the doctor, the report and the workflow rules (at Snakemake parse time) all
import it, so a fact changed here changes everywhere.

Canonical class names are lowercase and the canonical label id is the 0-based position in a label
set's `classes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# --- label sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSet:
    """One dataset's classes and how its native label values map onto canonical ids."""

    name: str
    classes: tuple[str, ...]
    # native value (as written in the dataset's files, str) -> canonical id
    native: dict[str, int] = field(default_factory=dict)
    # classes that exist natively but are left out of this set (e.g. AffectNet-7 drops contempt)
    excluded: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def id_of(self, native_value: object) -> int:
        """Canonical id of a native label value (`3`, `"Happy"`, `"happiness"`)."""
        key = str(native_value).strip()
        if key in self.native:
            return self.native[key]
        lowered = key.lower()
        if lowered in self.classes:
            return self.classes.index(lowered)
        raise KeyError(
            f"label {native_value!r} is not in the {self.name} label set "
            f"(expected one of {sorted(self.native) or list(self.classes)})"
        )


_SEVEN = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

DFEW = LabelSet(
    "dfew",
    _SEVEN,
    # EmoLabel_DataSplit CSVs write 1..7 in this order.
    native={str(i + 1): i for i in range(7)},
)

FERV39K = LabelSet(
    "ferv39k",
    _SEVEN,
    native={name.capitalize(): i for i, name in enumerate(_SEVEN)},
)

_MAFW11 = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

# MAFW split files name the class (`00019.mp4 happiness`).
MAFW = LabelSet("mafw", _MAFW11, native={c: i for i, c in enumerate(_MAFW11)})

_AFFECTNET8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

AFFECTNET = LabelSet("affectnet", _AFFECTNET8, native={str(i): i for i in range(8)})

AFFECTNET7 = LabelSet(
    "affectnet7",
    _AFFECTNET8[:7],
    native={str(i): i for i in range(7)},
    excluded=("contempt",),
)

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (DFEW, FERV39K, MAFW, AFFECTNET, AFFECTNET7)}


def get_label_set(name: str) -> LabelSet:
    """The label set called `name` (`dfew`, `ferv39k`, `mafw`, `affectnet`, `affectnet7`)."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}") from None


# MAFW and AffectNet spell some basic emotions differently from DFEW/FERV39K.
_SYNONYMS = {"happiness": "happy", "sadness": "sad", "anger": "angry"}


def canonical_emotion(name: str) -> str:
    """One spelling per emotion across datasets (`Happy`, `happiness` -> `happy`; `anger` -> `angry`)."""
    key = name.strip().lower()
    return _SYNONYMS.get(key, key)


def map_labels(src: str, dst: str) -> dict[int, int]:
    """Canonical id in `src` -> canonical id in `dst`, for classes both sets share by name.

    Used to compare class centres across datasets (Figure 4b): e.g. DFEW `happy` <-> AffectNet
    `happy`, MAFW `happiness` <-> AffectNet `happy`.
    """
    a, b = get_label_set(src), get_label_set(dst)
    targets = {canonical_emotion(c): i for i, c in enumerate(b.classes)}
    return {
        i: targets[canonical_emotion(c)]
        for i, c in enumerate(a.classes)
        if canonical_emotion(c) in targets
    }


# --- datasets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """One dataset as the pipeline knows it."""

    name: str  # the pipeline's id: config keys, file names, CLI choices
    title: str  # how tables, figures and messages name it
    folder: str  # the dataset's own top folder (a synthetic tree writes DIR/<folder>)
    media: str  # "video" or "image"
    label_set: str | None  # None: unlabeled (pre-training only)
    folds: tuple[int, ...] = ()  # 5-fold cross-validation; () = one official split
    store: str = ""  # the store table its clips come from ("" = its own name)

    @property
    def store_table(self) -> str:
        return self.store or self.name


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("dfew", "DFEW", "DFEW", "video", "dfew", folds=(1, 2, 3, 4, 5)),
        Dataset("mafw", "MAFW", "MAFW", "video", "mafw", folds=(1, 2, 3, 4, 5)),
        Dataset("ferv39k", "FERV39K", "FERV39K", "video", "ferv39k"),
        Dataset("affectnet", "AffectNet", "AffectNet", "image", "affectnet"),
        # The 7-class view of AffectNet: its own manifest (contempt quarantined), read from the
        # same tree, its clips from the 8-class store table.
        Dataset("affectnet7", "AffectNet-7", "AffectNet", "image", "affectnet7", store="affectnet"),
        Dataset("voxceleb2", "VoxCeleb2", "VoxCeleb2", "video", None),
    )
}
# Datasets with a tree, a manifest of their own reader and a store table (AffectNet-7 is a
# second manifest of the AffectNet tree).
STORE_DATASETS = tuple(d.name for d in DATASETS.values() if not d.store)
DFER_DATASETS = ("dfew", "mafw", "ferv39k")
SFER_DATASETS = ("affectnet7",)
FINETUNE_DATASETS = DFER_DATASETS + SFER_DATASETS
FOLDS: dict[str, tuple[int, ...]] = {name: d.folds for name, d in DATASETS.items()}
# Distributed as face crops: preprocessing resizes them only, never re-detects. Not MAFW: its
# `data/frames` are the clips' full frames (the dataset ships face boxes and 68 landmarks for them
# as annotations, and the UniLearn authors' `finetune/process/mtcnn.py` crops and aligns them
# before training).
FACE_CROPPED_DATASETS = frozenset({"dfew", "ferv39k", "voxceleb2", "affectnet", "affectnet7"})


def dataset(name: str) -> Dataset:
    """The dataset called `name`; a KeyError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


# Sizes of the sources that have no split file (AffectNet's and VoxCeleb2's own documentation).
VOXCELEB2_DEV_CLIPS = 1_092_009
AFFECTNET_TRAIN_IMAGES = {"affectnet": 287_651, "affectnet7": 283_901}  # AffectNet-7: no contempt
AFFECTNET_VAL_PER_CLASS = 500


# --- tasks, pre-training ---------------------------------------------------------------------

# The two tasks a batch can carry (`batch["task"]`) and a model has a head for: dynamic (video)
# and static (image) facial expression recognition.
TASKS = ("dfer", "sfer")

# Pre-training mode -> (source of the image batches, source of the video batches), each the role
# "image" (`pretrain.image_dataset`, AffectNet), "video" (`pretrain.video_dataset`, VoxCeleb2) or
# None. `video+video` takes its images from the video dataset's frames (paper Table 2).
PRETRAIN_MODES: dict[str, tuple[str | None, str | None]] = {
    "none": (None, None),
    "image": ("image", None),
    "video": (None, "video"),
    "image+video": ("image", "video"),
    "video+video": ("video", "video"),
}


def pretrain_sources(
    mode: str, image_dataset: str, video_dataset: str
) -> tuple[str | None, str | None]:
    """(image batches' dataset, video batches' dataset) of a pre-training mode."""
    roles = {"image": image_dataset, "video": video_dataset, None: None}
    image, video = PRETRAIN_MODES[mode]
    return roles[image], roles[video]


def sfer_fraction(sfer_proportion: float, dfer: bool, sfer: bool) -> float:
    """Fraction of the SFER training set one fine-tuning epoch uses: `sfer_proportion` (the
    paper's "proportion of the SFER dataset used", Figure 3b) when both tasks train, the whole
    set (1.0) when SFER trains alone. The loader, `unilearn config` and the time estimate read it
    here."""
    return sfer_proportion if dfer and sfer else 1.0


# --- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSize:
    """One ViT size: encoder shape, its default input and VideoMAE-style MAE decoder."""

    width: int
    depth: int
    heads: int
    input_size: int
    num_frames: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int


MODEL_SIZES: dict[str, ModelSize] = {
    "base": ModelSize(
        768,
        12,
        12,
        input_size=160,
        num_frames=16,
        decoder_width=384,
        decoder_depth=4,
        decoder_heads=6,
    ),  # fmt: skip
    "tiny": ModelSize(
        192, 4, 3, input_size=64, num_frames=8, decoder_width=96, decoder_depth=2, decoder_heads=3
    ),  # fmt: skip
}
PATCH_SIZE = 16
# The classifiers (plain ViT, UniLearn with MoAE, ViT with a full-FFN MoE) and the pre-training MAE.
CLASSIFIER_ARCHS = ("vit", "unilearn", "vit_moe")
ARCHS = CLASSIFIER_ARCHS + ("mae",)


def model_name(arch: str, size: str) -> str:
    """The registered model name of an arch and size (`unilearn_base_patch16_160`)."""
    if arch not in ARCHS or size not in MODEL_SIZES:
        raise ValueError(
            f"unknown arch/size {arch!r}/{size!r}; archs {ARCHS}, sizes {tuple(MODEL_SIZES)}"
        )
    return f"{arch}_{size}_patch{PATCH_SIZE}_{MODEL_SIZES[size].input_size}"


# MoAE's adapter bottleneck as a fraction of the width (r = d / 4, the authors'); not a config key.
ADAPTER_RATIO = 0.25
MOAE_POSITIONS = ("later", "early", "middle", "alternate")


def moae_block_indices(depth: int, position: str | Sequence[int]) -> tuple[int, ...]:
    """Which blocks carry a MoAE (Table 5 right), for a ViT of `depth` blocks.

    `later` = second half (blocks 6-11 of ViT-B, the paper's default), `early` = first half,
    `middle` = the central half (3-8), `alternate` = every other block ending with the last
    (1, 3, ..., 11); or an explicit list of block indices.
    """
    half = depth // 2
    if isinstance(position, str):
        if position == "later":
            indices = range(depth - half, depth)
        elif position == "early":
            indices = range(0, half)
        elif position == "middle":
            start = (depth - half) // 2
            indices = range(start, start + half)
        elif position == "alternate":
            indices = range(depth - 1, -1, -2)
        else:
            raise ValueError(
                f"moae_position {position!r}: expected one of {MOAE_POSITIONS} or a list of block "
                "indices"
            )
        return tuple(sorted(indices))
    indices = tuple(int(i) for i in position)
    bad = [i for i in indices if not 0 <= i < depth]
    if bad or len(set(indices)) != len(indices) or not indices:
        raise ValueError(
            f"moae_position {list(position)}: expected distinct block indices in [0, {depth - 1}]"
        )
    return tuple(sorted(indices))


# --- input -----------------------------------------------------------------------------------

# Every model sees frames normalised with ImageNet's mean and std (as VideoMAE and the authors).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# timm's RandAugment policy for the SFER images (the authors' fine-tuning: magnitude 9, 2 ops).
SFER_RANDAUGMENT = "rand-m9-n2-mstd0.5-inc1"
# timm's RandAugment policy for the DFER clips (fine-tuning's default `randaug`: magnitude 7, 4 ops).
DFER_RANDAUGMENT = "rand-m7-n4-mstd0.5-inc1"


# --- framing of the stored frames -------------------------------------------------------------

# How `unilearn preprocess` frames a store dataset's frames (`data.store.framing`): dataset ->
# (the authors' framing, ours). A dataset not listed is framed `default` (ours for every row).
FRAMINGS: dict[str, tuple[str, str]] = {
    # the authors' video dataset cuts rows 0-160, columns 32-192 out of every 224x224 frame
    # (pretrain/omnivision/data/path_dataset.py); ours resizes the whole frame
    "voxceleb2": ("authors_region", "whole_frame"),
    # their finetune/process/mtcnn.py: a tight MTCNN box per frame, levelled from the eyes,
    # stretched to a square; ours: a tracked, smoothed 1.3x square box
    "mafw": ("authors_mtcnn", "tracked"),
    # their AffectNet-7 list reads OpenFace-aligned crops; ours: 5 MTCNN landmarks inside the
    # annotation box, similarity-aligned to FACE_TEMPLATE_5, or the annotation box as it is
    "affectnet": ("aligned_5point", "box"),
}
# Which rows a framing applies to: `frame` (only resized: distributed face-cropped), `detect`
# (detected), `box` (an annotated face box); on other rows the row kind's `ours` applies.
FRAMING_ROWS: dict[str, str] = {
    "authors_region": "frame",
    "whole_frame": "frame",
    "authors_mtcnn": "detect",
    "tracked": "detect",
    "aligned_5point": "box",
    "box": "box",
}
FRAMING_DEFAULT_OF_ROWS = {"frame": "whole_frame", "detect": "tracked", "box": "box"}
FRAMING_TEXT: dict[str, str] = {
    "default": "whole frame resized, detected faces tracked, annotated boxes cropped",
    "authors_region": "the authors' fixed region (rows 0-160, columns 32-192 of 224x224)",
    "whole_frame": "the whole frame resized",
    "authors_mtcnn": "the authors' MTCNN crop: tight box per frame, eyes levelled, stretched square",
    "tracked": "a tracked, smoothed 1.3x square face box",
    "aligned_5point": "5-landmark similarity alignment inside the annotation box",
    "box": "the annotation box cropped",
}
# How a store keeps its frames (`data.store.codec`; a dataset not listed: the first): JPEG, each
# frame alone (every loader's fast path), or H.264 in closed groups of frames (every frame of a
# large video set in fewer bytes than JPEG keeps a quarter of them).
STORE_CODECS = ("jpeg", "h264")
# The authors' VoxCeleb2 region in a 224x224 frame: (row start, row end), (column start, end).
# A frame of another size gets the region scaled proportionally on each axis.
VOXCELEB2_REGION = ((0, 160), (32, 192))
VOXCELEB2_FRAME = 224
# The canonical 5-point face (left eye, right eye, nose, left and right mouth corner) that
# `aligned_5point` maps landmarks onto, as fractions of the output side: InsightFace/ArcFace's
# 112x112 template (the widely used one) divided by 112.
FACE_TEMPLATE_5 = (
    (0.34192, 0.46157),
    (0.65653, 0.45983),
    (0.50023, 0.64051),
    (0.37098, 0.82469),
    (0.63152, 0.82325),
)


# --- accelerators ----------------------------------------------------------------------------

# bf16 dense tensor-core peak, TFLOP/s (vendor data sheets, no sparsity), by a part of the CUDA
# device name (`torch.cuda.get_device_name`); the first key the name contains wins, so a more
# specific key comes before the key it contains. MFU in bench/gpu.py and the Slurm time
# estimate (`launcher.time_estimate.gpu_peak_tflops`, default the H100 SXM) read this table.
GPU_PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)


def gpu_peak_tflops(device_name: str) -> float | None:
    """bf16 dense peak TFLOP/s of a CUDA device by its name; None for a device not in the table."""
    return next((peak for key, peak in GPU_PEAK_BF16_TFLOPS if key in device_name), None)
