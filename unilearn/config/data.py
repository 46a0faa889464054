"""The `data:` section: dataset roots, the clip store, the doctor, the datasets a run uses."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from unilearn.catalogue import DFER_DATASETS, FRAMINGS, STORE_CODECS, STORE_DATASETS
from unilearn.config.base import DferDataset, PositiveInt, Strict, expand_path


class DatasetRoots(Strict):
    """Native dataset roots (the trees the datasets are distributed as). Null = not available."""

    dfew: str | None = None
    mafw: str | None = None
    ferv39k: str | None = None
    affectnet: str | None = None
    voxceleb2: str | None = None

    _paths = field_validator("*")(classmethod(lambda cls, v: expand_path(v)))


StoreDataset = Literal[STORE_DATASETS]


class StoreConfig(Strict):
    short_side: PositiveInt = 176  # frames are stored with this short side (>= input_size)
    # Keep every k-th source frame of a dataset that only pre-training reads (e.g. voxceleb2: 4,
    # at pretrain.frame_stride 4): a quarter of the store; the loader refuses other strides.
    frame_stride: dict[StoreDataset, PositiveInt] = {}
    # How each dataset's frames are framed (docs/data.md "Framing"); defaults are the authors':
    #   voxceleb2: authors_region (rows 0-160, columns 32-192 of 224x224, stored at 160 px) |
    #              whole_frame (the whole frame resized: faces ~1.4x smaller)
    #   mafw: authors_mtcnn (a tight MTCNN box per frame, eyes levelled, stretched square; frames
    #         with no face left out) | tracked (a tracked, smoothed 1.3x square box)
    #   affectnet: aligned_5point (5 MTCNN landmarks inside the annotation box -> similarity to a
    #              canonical template; the box crop where none is found) | box (the box cropped)
    # Any other dataset is framed `default`. A store records its framing in settings.json and
    # refuses to be filled with another.
    framing: dict[StoreDataset, str] = {d: f[0] for d, f in FRAMINGS.items()}
    # How each dataset's frames are stored (a dataset not named: jpeg): jpeg = each frame alone;
    # h264 = closed groups of frames of 4 phase streams (voxceleb2 in the paper config: every
    # frame, so pre-training starts a clip on any frame, in ~0.7x the bytes of every 4th frame as
    # JPEG and ~1.25x its read time; docs/data-loading.md).
    codec: dict[StoreDataset, Literal[STORE_CODECS]] = {}

    @field_validator("framing")
    @classmethod
    def _framings(cls, v: dict[str, str]) -> dict[str, str]:
        for dataset, framing in v.items():
            allowed = ("default", *FRAMINGS.get(dataset, ()))
            if framing not in allowed:
                raise ValueError(
                    f"data.store.framing.{dataset}={framing!r}: expected one of {list(allowed)}"
                )
        return {**{d: f[0] for d, f in FRAMINGS.items()}, **v}


class DoctorConfig(Strict):
    enabled: bool = True
    override: bool = False  # run even if the doctor says the data would not reproduce the paper


class DataConfig(Strict):
    synthetic: Literal["demo", "tiny"] | None = None  # synth preset; null = real datasets
    workdir: str = "data"  # synth/, manifests/, store/ live under here
    roots: DatasetRoots = DatasetRoots()
    dfer_datasets: list[DferDataset] = list(DFER_DATASETS)
    sfer_dataset: Literal["affectnet7"] = "affectnet7"
    store: StoreConfig = StoreConfig()
    num_workers: Annotated[int, Field(ge=0)] = 8
    pin_memory: bool = True  # only takes effect on CUDA
    doctor: DoctorConfig = DoctorConfig()
    # Preprocess a dataset as N parts, each its own (Slurm) job, merged when all are done.
    preprocess_shards: dict[StoreDataset | Literal["default"], PositiveInt] = {"default": 1}

    _workdir = field_validator("workdir")(classmethod(lambda cls, v: expand_path(v)))

    @field_validator("dfer_datasets")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"datasets listed twice: {v}")
        return v
