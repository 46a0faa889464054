"""The config schema: every section of a run config as a strict pydantic model, with its
defaults (written here once; the models below take required arguments) and its validation
rules, up to `Settings` (what one run needs) and `Config` (a file: settings + named experiments +
sweeps).

Import-light on purpose (pydantic, no torch): the Snakefile loads it at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from unilearn.catalogue import (
    CLASSIFIER_ARCHS,
    DFER_DATASETS,
    DFER_RANDAUGMENT,
    FINETUNE_DATASETS,
    MOAE_POSITIONS,
    MODEL_SIZES,
    PRETRAIN_MODES,
    SFER_RANDAUGMENT,
    STORE_DATASETS,
    TASKS,
    moae_block_indices,
)
from unilearn.config import resolve
from unilearn.config.errors import ConfigError, did_you_mean, format_errors, validated
from unilearn.config.experiments import PAPER_EXPERIMENTS, SWEEP_KEYS
from unilearn.config.overrides import apply_overrides, parse_override

DatasetName = Literal[FINETUNE_DATASETS]
DferDataset = Literal[DFER_DATASETS]
PretrainMode = Literal[tuple(PRETRAIN_MODES)]
Arch = Literal[CLASSIFIER_ARCHS]
Task = Literal[TASKS]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
UnitFloat = Annotated[float, Field(gt=0.0, le=1.0)]


class _Strict(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# ---------------------------------------------------------------------------------------------
# data


def _expand(v: str | None) -> str | None:
    """`~` and `$VARS` in paths are expanded, so one local.yaml serves every user of a cluster."""
    return None if v is None else os.path.expandvars(os.path.expanduser(v))


class DatasetRoots(_Strict):
    """Native dataset roots (the trees the datasets are distributed as). Null = not available."""

    dfew: str | None = None
    mafw: str | None = None
    ferv39k: str | None = None
    affectnet: str | None = None
    voxceleb2: str | None = None

    _paths = field_validator("*")(classmethod(lambda cls, v: _expand(v)))


StoreDataset = Literal[STORE_DATASETS]


class StoreConfig(_Strict):
    short_side: PositiveInt = 176  # frames are stored with this short side (>= input_size)
    # Keep every k-th source frame of a dataset that only pre-training reads (e.g. voxceleb2: 4,
    # at pretrain.frame_stride 4): a quarter of the store; the loader refuses other strides.
    frame_stride: dict[StoreDataset, PositiveInt] = {}


class DoctorConfig(_Strict):
    enabled: bool = True
    override: bool = False  # run even if the doctor says the data would not reproduce the paper


class DataConfig(_Strict):
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

    _workdir = field_validator("workdir")(classmethod(lambda cls, v: _expand(v)))

    @field_validator("dfer_datasets")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"datasets listed twice: {v}")
        return v


# ---------------------------------------------------------------------------------------------
# model


# MoAEConfig as flat model kwargs: the same names; `position` is prefixed (a ViT also has position
# tables). The plain-ViT baseline has no experts; ViT-MoE's FFN experts have no inner residual.
_FLAT_NAMES = {"position": "moae_position"}
_GATED = ("n_experts", "top_k", "position", "aux_loss_coef", "noisy_gating", "capacity_factor")
_MODEL_KEYS = {"vit": (), "vit_moe": _GATED, "unilearn": (*_GATED, "expert_residual")}


class MoAEConfig(_Strict):
    """Mixture of Adapter Experts (Eq. 4-12); ViT-MoE uses the same count, k, positions, gate and
    capacity. Defaults follow the authors' code (MSA-LMC/S4D); docs/models.md lists where the
    paper's text differs and the key that selects the text's variant."""

    n_experts: PositiveInt = 8
    top_k: PositiveInt = 2
    # later (blocks depth/2..depth-1, the paper's default) | early | middle | alternate,
    # or an explicit list of distinct block indices (checked against the depth by the model).
    position: Literal[MOAE_POSITIONS] | list[int] = "later"
    # load-balancing loss weight (Shazeer et al. 2017); 0 = off, as in the authors' runs (their
    # term is never applied)
    aux_loss_coef: NonNegFloat = 0.0
    noisy_gating: bool = True  # gate noise in training (never at test time)
    # tokens an expert keeps per forward: int(tokens * top_k / n_experts * factor), in token
    # order; the rest get nothing from it (authors: 1.0); null = unlimited
    capacity_factor: Annotated[float, Field(gt=0.0)] | None = 1.0
    # false = experts are plain bottleneck MLPs (authors' code); true = Eq. 7's x + MLP(x)
    expert_residual: bool = False

    @field_validator("top_k")
    @classmethod
    def _top_k_le_n(cls, v: int, info: ValidationInfo) -> int:
        n = info.data.get("n_experts")
        if n is not None and v > n:
            raise ValueError(f"top_k={v} must be <= n_experts={n}")
        return v

    # -- as the models' kwargs (`unilearn.models.create_model`) ----------------------------------

    def model_kwargs(self, arch: str) -> dict[str, Any]:
        """This section as the flat constructor kwargs of a model of `arch`."""
        return {_FLAT_NAMES.get(k, k): getattr(self, k) for k in _MODEL_KEYS[arch]}

    @classmethod
    def from_model_kwargs(cls, kwargs: Mapping[str, Any]) -> MoAEConfig:
        """The section behind flat model kwargs (the others ignored), validated by this schema:
        what `create_model` uses for its defaults and checks, so both are written once."""
        names = {_FLAT_NAMES.get(k, k): k for k in cls.model_fields}
        return validated({k: kwargs[f] for f, k in names.items() if f in kwargs}, cls)


class DecoderConfig(_Strict):
    """The MAE decoder (VideoMAE default: 4 blocks, width 384, 6 heads)."""

    depth: PositiveInt = 4
    width: PositiveInt = 384
    heads: PositiveInt = 6


class ModelConfig(_Strict):
    size: Literal[tuple(MODEL_SIZES)] = "base"  # base = ViT-B/16; tiny = width 192, depth 4
    # Optional changes to the size's encoder (null = the size's own): e.g. a narrower demo model.
    width: PositiveInt | None = None
    depth: PositiveInt | None = None
    heads: PositiveInt | None = None
    num_frames: PositiveInt = 16
    input_size: PositiveInt = 160
    tubelet_size: PositiveInt = 2
    drop_path: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    moae: MoAEConfig = MoAEConfig()
    decoder: DecoderConfig = DecoderConfig()

    @field_validator("input_size")
    @classmethod
    def _input_multiple_of_patch(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"input_size={v} must be a multiple of the 16-pixel patch")
        return v

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.num_frames % self.tubelet_size:
            raise ValueError(
                f"num_frames={self.num_frames} must be a multiple of tubelet_size={self.tubelet_size}"
            )
        width, depth, heads = self.encoder_shape
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        try:  # the rule is the catalogue's, shared with `create_model`
            moae_block_indices(depth, self.moae.position)
        except ValueError as e:
            raise ValueError(f"moae.position: {e} (depth {depth} of size {self.size})") from None
        return self

    @property
    def encoder_shape(self) -> tuple[int, int, int]:
        """(width, depth, heads) of the encoder: the size's, changed by width/depth/heads."""
        size = MODEL_SIZES[self.size]
        w, d, h = size.width, size.depth, size.heads
        return self.width or w, self.depth or d, self.heads or h

    def encoder_kwargs(self) -> dict[str, int]:
        """The encoder-shape kwargs that differ from the size's defaults."""
        given = {"embed_dim": self.width, "depth": self.depth, "num_heads": self.heads}
        return {key: value for key, value in given.items() if value is not None}


# ---------------------------------------------------------------------------------------------
# training stages


class _OptimConfig(_Strict):
    epochs: PositiveInt
    batch_size: PositiveInt  # per process (per GPU)
    blr: Annotated[float, Field(gt=0.0)]  # lr = blr * global_batch / lr_batch_base
    # The reference batch of `blr`: 256 is MAE's convention; the authors' fine-tuning uses 8 and
    # their pre-training 512.
    lr_batch_base: PositiveInt = 256
    lr: Annotated[float, Field(gt=0.0)] | None = None  # absolute lr; overrides blr when set
    min_lr: NonNegFloat = 1e-6
    weight_decay: NonNegFloat = 0.05
    betas: tuple[
        Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]
    ] = (
        0.9,
        0.999,
    )
    warmup_epochs: NonNegFloat = 5
    clip_grad: Annotated[float, Field(gt=0.0)] | None = None
    checkpoint_every: PositiveInt | None = 500  # steps between resumable `last.pt` writes
    # wall-clock minutes between `last.pt` writes (at epoch ends and every runtime.log_every
    # steps once due; replaces the save at every epoch end); null = checkpoint_every + epoch ends
    checkpoint_minutes: Annotated[float, Field(gt=0.0)] | None = None
    frame_stride: PositiveInt = 4  # temporal sampling stride of training clips
    max_steps: PositiveInt | None = None  # stop early after this many steps (smoke tests)

    @model_validator(mode="after")
    def _warmup_within_run(self):
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} exceeds epochs={self.epochs}")
        return self


class PretrainConfig(_OptimConfig):
    """Dual-modal MAE pre-training (Eq. 1-2)."""

    epochs: PositiveInt = 100
    batch_size: PositiveInt = 32
    blr: Annotated[float, Field(gt=0.0)] = 3e-4
    min_lr: NonNegFloat = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    mask_ratio_video: Fraction = 0.95
    mask_ratio_image: Fraction = 0.90
    # random = int(ratio x tokens) masked anywhere in the clip (paper text, the authors'
    # RandMasking); tube = the same spatial positions masked in every slice (VideoMAE, MAE-DFER)
    masking: Literal["random", "tube"] = "random"
    norm_pix_loss: bool = True
    image_dataset: Literal["affectnet"] = "affectnet"
    video_dataset: Literal["voxceleb2"] = "voxceleb2"
    # Fraction of the image modality's clips drawn per epoch relative to its size (1 = all).
    image_proportion: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    # Augmentation: `multiscale` = VideoMAE's multi-scale crop, no flip (MAE-DFER); `resized` =
    # the authors' (OmniMAE-style): images RandomResizedCrop(image_crop_scale) + flip, videos
    # short side scaled to video_short_side x input_size, then RandomResizedCrop(video_crop_scale).
    augment: Literal["multiscale", "resized"] = "multiscale"
    image_crop_scale: tuple[UnitFloat, UnitFloat] = (0.2, 1.0)
    video_short_side: Annotated[float, Field(ge=1.0)] = 1.2  # 192 for a 160 input
    video_crop_scale: tuple[UnitFloat, UnitFloat] = (0.08, 1.0)
    # Repeated sampling: each decoded video gives this many views, each with its own crop and
    # mask. `batch_size` counts views (a video batch decodes batch_size / repeated_views clips).
    repeated_views: PositiveInt = 1
    # Fraction of the video set decoded per epoch, a fresh draw each epoch (the authors': 1/4
    # with 4 views, so an epoch still sees as many views as the set has videos).
    video_repeat: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    # With `resized` and repeated views: ship each decoded clip once and cut its views on the
    # device (bilinear, unrounded); the loader's CPU cost per view falls to about its decode.
    crop_on_device: bool = False
    # Published weights as a mode's pre-training: mode -> checkpoint file. The workflow then
    # skips that pre-training and fine-tunes from the file (its sha256 goes into the meta).
    init: dict[PretrainMode, str] = {}

    _init_paths = field_validator("init")(
        classmethod(lambda cls, v: {k: _expand(p) for k, p in v.items()})
    )

    @model_validator(mode="after")
    def _views_divide_batch(self):
        if self.batch_size % self.repeated_views:
            raise ValueError(
                f"batch_size={self.batch_size} (views per GPU) must be a multiple of "
                f"repeated_views={self.repeated_views}"
            )
        for key in ("image_crop_scale", "video_crop_scale"):
            low, high = getattr(self, key)
            if low > high:
                raise ValueError(f"{key} [{low}, {high}]: the lower bound exceeds the upper")
        return self


class FinetuneConfig(_OptimConfig):
    """Joint SFER/DFER fine-tuning (Eq. 13), VideoMAE/MAE-DFER recipe."""

    epochs: PositiveInt = 100
    batch_size: PositiveInt = 32
    blr: Annotated[float, Field(gt=0.0)] = 1e-3
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.75
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    mixup: NonNegFloat = 0.8  # alpha; 0 = off
    cutmix: NonNegFloat = 1.0  # alpha; 0 = off
    mixup_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    mixup_switch_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    randaug: str | None = DFER_RANDAUGMENT  # timm RandAugment spec; null = off
    # RandomResizedCrop area range (VideoMAE / MAE-DFER: 0.08-1)
    crop_scale: tuple[
        Annotated[float, Field(gt=0.0, le=1.0)], Annotated[float, Field(gt=0.0, le=1.0)]
    ] = (
        0.08,
        1.0,
    )
    # Fraction of the SFER dataset used per epoch (Figure 3b; paper default 50%).
    sfer_proportion: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # How that fraction is drawn: `subset` = one fixed uniform subset for the whole run;
    # `balanced` = the authors': a fresh class-balanced draw with replacement every epoch.
    sfer_sampling: Literal["subset", "balanced"] = "subset"
    sfer_batch_factor: PositiveInt = 1  # SFER batches hold this many x batch_size images
    # SFER image augmentation: `video` = the clip augmentation above; `resize_crop` = the
    # authors': resize to sfer_resize x input_size, random crop, flip, RandAugment `sfer_randaug`.
    sfer_augment: Literal["video", "resize_crop"] = "video"
    sfer_resize: Annotated[float, Field(ge=1.0)] = 1.2  # 192 for a 160 input
    sfer_randaug: str | None = SFER_RANDAUGMENT
    # Random erasing probability (timm's RandomErasing: one box of 2-33% of the frame, the same
    # box in every frame; videos get per-pixel noise, SFER resize_crop images zeros, as theirs).
    random_erasing: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    # Per-dataset values of the keys above, applied when a run is resolved for its dataset
    # (e.g. {ferv39k: {frame_stride: 1}}); override one with finetune.per_dataset.D.KEY=V.
    per_dataset: dict[DatasetName, dict[str, Any]] = {}

    @field_validator("per_dataset")
    @classmethod
    def _per_dataset_keys(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for dataset, values in v.items():
            for key in values:
                if key not in cls.model_fields or key == "per_dataset":
                    raise ValueError(
                        f"per_dataset.{dataset}.{key}: not a finetune key"
                        + did_you_mean(key, [k for k in cls.model_fields if k != "per_dataset"])
                    )
        return v

    def for_dataset(self, dataset: str) -> FinetuneConfig:
        """This section with `per_dataset[dataset]` applied (validated)."""
        values = self.per_dataset.get(dataset)
        if not values:
            return self
        try:
            return FinetuneConfig.model_validate({**self.model_dump(mode="python"), **values})
        except ValidationError as e:
            raise ConfigError(f"finetune.per_dataset.{dataset}: {format_errors(e)}") from None

    # Test the run's own test split every N epochs and keep checkpoint-best.pt by WAR (the
    # authors' "best weights"); 0 = test only after the last epoch. The final test always runs.
    eval_every: Annotated[int, Field(ge=0)] = 1

    @field_validator("crop_scale")
    @classmethod
    def _crop_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"crop_scale {list(v)}: the lower bound exceeds the upper")
        return v

    @model_validator(mode="after")
    def _even_batch_for_mixup(self):
        if (self.mixup > 0 or self.cutmix > 0) and self.batch_size % 2:
            raise ValueError(
                f"batch_size={self.batch_size} must be even when mixup/cutmix is on (timm)"
            )
        return self

    @field_validator("randaug", "sfer_randaug")
    @classmethod
    def _randaug_spec(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("rand-"):
            raise ValueError(
                f"expected a timm RandAugment spec like 'rand-m7-n4-mstd0.5-inc1', got {v!r}"
            )
        return v


class EvaluateConfig(_Strict):
    n_clips: PositiveInt = 2  # clips uniformly sampled per video; softmax scores averaged
    batch_size: PositiveInt = 16


class Experiment(_Strict):
    """One row of a paper table: architecture + pre-training + fine-tuning tasks (+ overrides)."""

    arch: Arch
    pretrain: PretrainMode
    tasks: list[Task]
    overrides: dict[str, Any] = {}  # dotted key -> value, applied on top of the config
    description: str = ""

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}, got {v}")
        # SFER first: the order the config has always stored (it is hashed).
        return sorted(v, key=TASKS.index, reverse=True)


# ---------------------------------------------------------------------------------------------
# execution


class SlurmConfig(_Strict):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_task: Annotated[int, Field(ge=0)] = 0
    cpus_per_task: PositiveInt = 2
    mem_gb: Annotated[float, Field(gt=0.0)] = 4
    time_min: Annotated[int, Field(ge=2)] = 60  # submitit signals 90 s before the limit
    nodes: PositiveInt = 1
    tasks_per_node: PositiveInt = 1  # one task = one DDP rank (one GPU)
    constraint: str | None = None
    max_requeues: Annotated[int, Field(ge=0)] = 5  # requeues after hitting the time limit


class TimeEstimateConfig(_Strict):
    """Default Slurm time limits of GPU stages from the FLOP model (`unilearn.launch.estimate`);
    `launcher.stages.<stage>.time_min` (or `--slurm-time-min`) wins."""

    enabled: bool = True
    gpu_peak_tflops: Annotated[float, Field(gt=0.0)] = 989.0  # H100 SXM dense bf16
    mfu: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # assumed model FLOP utilisation
    safety: Annotated[float, Field(ge=1.0)] = 2.0
    startup_min: NonNegFloat = 10.0  # queue-independent start: imports, data, first checkpoint
    min_min: Annotated[int, Field(ge=2)] = 20
    max_min: Annotated[int, Field(ge=2)] = 2880  # longer runs requeue at the limit and resume


class LauncherConfig(_Strict):
    """Where GPU stages run (`unilearn.launch`; its `--launcher`/`--slurm-*` flags override)."""

    name: Literal["local", "submitit"] = "local"
    slurm: SlurmConfig = SlurmConfig()
    time_estimate: TimeEstimateConfig = TimeEstimateConfig()
    # Per-stage overrides of `slurm` (e.g. pretrain on 8 GPUs, evaluate on 1; the CPU stages
    # doctor, manifest and preprocess on a CPU partition with gpus_per_task 0).
    stages: dict[
        Literal["pretrain", "finetune", "evaluate", "doctor", "manifest", "preprocess"],
        dict[str, Any],
    ] = {}

    @field_validator("stages")
    @classmethod
    def _stage_overrides_are_slurm_keys(cls, v: dict[str, dict[str, Any]]):
        for stage, over in v.items():
            try:
                SlurmConfig(**over)
            except ValidationError as e:
                raise ValueError(f"stages.{stage}: {format_errors(e)}") from None
        return v

    def slurm_for(self, stage: str) -> SlurmConfig:
        """The Slurm resources of one stage: `slurm` updated by `stages[stage]`."""
        return SlurmConfig(**{**self.slurm.model_dump(), **self.stages.get(stage, {})})

    def for_stage(self, stage: str) -> LauncherConfig:
        """This section as seen by one stage (what `launch.submit_if_requested` is given)."""
        return LauncherConfig(name=self.name, slurm=self.slurm_for(stage))


class WandbConfig(_Strict):
    # null = the environment decides: WANDB_PROJECT, else "unilearn"
    project: str | None = None
    entity: str | None = None
    # null = the environment decides: WANDB_MODE, else offline (no network needed; `wandb sync`
    # later). `--wandb MODE` on one run wins over both.
    mode: Literal["offline", "online", "disabled"] | None = None


class RuntimeConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    threads: PositiveInt | None = None  # torch intra-op threads; null = torch's default
    # a progress line (stdout, the job's log) and a W&B point every this many training steps;
    # not part of the config hash (it changes no result)
    log_every: PositiveInt = 50
    compile: bool = False  # torch.compile the training model (CUDA; first steps compile)


# ---------------------------------------------------------------------------------------------
# the config


class Settings(_Strict):
    """Everything but the experiment catalogue and sweeps (what one run needs)."""

    name: str = "unilearn"  # experiment family; W&B group prefix
    seed: Annotated[int, Field(ge=0)] = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    launcher: LauncherConfig = LauncherConfig()
    wandb: WandbConfig = WandbConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _strided_stores_serve_pretraining_only(self):
        finetuned = {*self.data.dfer_datasets, "affectnet"}
        for dataset, k in self.data.store.frame_stride.items():
            if k > 1 and dataset in finetuned:
                raise ValueError(
                    f"data.store.frame_stride.{dataset}={k}: fine-tuning reads every frame of "
                    f"{dataset}; keep every k-th frame only of data that pre-training alone reads"
                )
            if self.pretrain.frame_stride % k:
                raise ValueError(
                    f"data.store.frame_stride.{dataset}={k} does not divide "
                    f"pretrain.frame_stride={self.pretrain.frame_stride}"
                )
        return self


class Config(Settings):
    """A validated config file: run settings + named experiments + sweeps."""

    experiments: dict[str, Experiment] = Field(
        default_factory=lambda: dict(PAPER_EXPERIMENTS), validate_default=True
    )
    sweeps: dict[str, list[Any]] = {}

    @field_validator("experiments", mode="before")
    @classmethod
    def _onto_catalogue(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {**PAPER_EXPERIMENTS, **v}
        return v

    # -- experiments and sweeps -----------------------------------------------------------------

    def check_runs(self) -> None:
        """Every experiment's overrides and every sweep point apply to these settings (checked
        once, when a file is loaded: not hours later, and not at every `Config` construction)."""
        base = self.model_dump(mode="python", exclude={"experiments", "sweeps"})
        for name, exp in self.experiments.items():
            try:
                validated(apply_overrides(base, exp.overrides.items(), Config), Settings)
            except ConfigError as e:
                raise ConfigError(f"experiments.{name}.overrides: {e}") from None
        for name, values in self.sweeps.items():
            key = SWEEP_KEYS.get(name, name)
            for value in values:
                try:
                    validated(apply_overrides(base, [(key, value)], Config), Settings)
                except ConfigError as e:
                    raise ConfigError(f"sweeps.{name}={value!r}: {e}") from None

    def resolve_experiment(self, name: str, dataset: str) -> resolve.ResolvedExperiment:
        """Experiment `name` fine-tuned for `dataset` (`unilearn.config.resolve`)."""
        return resolve.resolve_experiment(self, name, dataset)

    def mae_spec(self) -> tuple[str, dict]:
        """Registered MAE name + kwargs for pre-training (encoder = the fine-tune ViT)."""
        return resolve.mae_spec(self)

    def with_overrides(self, overrides: Iterable[tuple[str, Any]] | Iterable[str]) -> Config:
        """A new Config with `key.sub=value` strings or (key, value) pairs applied. An override
        of `experiments` or `sweeps` is checked as loading checks them (`check_runs`)."""
        pairs = [parse_override(o) if isinstance(o, str) else o for o in overrides]
        cfg = validated(apply_overrides(self.model_dump(mode="python"), pairs, Config), Config)
        if any(key.split(".", 1)[0] in ("experiments", "sweeps") for key, _ in pairs):
            cfg.check_runs()
        return cfg
