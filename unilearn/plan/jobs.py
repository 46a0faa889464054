"""The workflow's jobs worked out from the unilearn config: for each rule, the files it reads and
the arguments it passes (`workflow/rules/*.smk` only wire these to `unilearn`). Torch-free, and
built once per Snakemake invocation (`Plan.from_workflow_config`), so a misspelt key, a missing
published checkpoint or an unknown sweep point fails at parse time.

Paths are those of `unilearn.report.layout`; a run's sweep point is `unilearn.report.runs`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from unilearn.catalogue import DATASETS, FINETUNE_DATASETS, FOLDS, PRETRAIN_MODES, STORE_DATASETS
from unilearn.plan.commands import StageCommands
from unilearn.report import layout, runs, seeds, spec


class PlanError(ValueError):
    """The unilearn config cannot give the workflow what a target needs; the message names the
    key (the workflow shows it as a WorkflowError)."""


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _alternatives(values) -> str:
    """A regular expression matching exactly one of `values` (`+` escaped: image+video)."""
    return "|".join(v.replace("+", r"\+") for v in values)


@dataclass
class Plan:
    """`cfg`: the validated unilearn config; `runs`: `<runs>/<config name>`; `results`: where
    the tables and figures go; `commands`: how each stage starts."""

    cfg: Any
    runs: str
    results: str
    commands: StageCommands
    pretrain_init: dict[str, str] = field(default_factory=dict)
    _finetune_hashes: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_workflow_config(cls, config: dict[str, Any], python: str) -> Plan:
        """From the workflow's own keys (`snakemake --config`, schemas/workflow.schema.yaml)."""
        from unilearn.config import ConfigError, load_config
        from unilearn.engine.pretrain_init import init_checkpoint

        configs, overrides = _as_list(config["configs"]), _as_list(config["overrides"])
        try:
            cfg = load_config(configs, overrides)
        except ConfigError as error:
            raise PlanError(f"invalid unilearn config: {error}") from None
        # Published weights (`pretrain.init`: mode -> file) stand in for a mode's pre-training:
        # its fine-tunings start from the file and the pre-training never runs.
        try:
            init = {mode: str(init_checkpoint(cfg, mode)) for mode in cfg.pretrain.init}
        except FileNotFoundError as error:
            raise PlanError(f"invalid unilearn config: {error}") from None
        run_root = f"{config['runs']}/{cfg.name}"
        commands = StageCommands(
            python=python,
            configs=tuple(configs),
            overrides=tuple(overrides),
            launcher=config["launcher"] or cfg.launcher.name,
            submitit_cluster=config["submitit_cluster"],
            logs=f"{run_root}/logs",
            threads=cfg.runtime.threads,
        )
        return cls(cfg, run_root, config["results"], commands, init)

    # -- directories ---------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        return self.cfg.data.workdir

    @property
    def synth(self) -> str:
        return f"{self.workdir}/synth"

    @property
    def doctor(self) -> str:
        return f"{self.workdir}/doctor"

    @property
    def manifests(self) -> str:
        return f"{self.workdir}/manifests"

    @property
    def store(self) -> str:
        return f"{self.workdir}/store"

    @property
    def logs(self) -> str:
        return self.commands.logs

    def store_table(self, dataset: str) -> str:
        return f"{self.store}/{dataset}.parquet"

    # -- what a config edit re-runs ------------------------------------------------------------

    @functools.cached_property
    def config_hash(self) -> dict[str | None, str]:
        """The hash of the whole config (tables, figures) and of pre-training's sections: rules
        carry it as a param, and Snakemake re-runs a job whose params changed (launcher and
        wandb, not hashed, never cause a re-run)."""
        from unilearn.config import config_hash

        return {stage: config_hash(self.cfg, stage) for stage in (None, "pretrain")}

    def finetune_hash(self, run: str, dataset: str) -> str:
        """The fine-tuning config hash the engine records for a run on `dataset` (its
        config.sha256), worked out once per run and dataset (the folds share it)."""
        if (run, dataset) not in self._finetune_hashes:
            self._finetune_hashes[run, dataset] = runs.finetune_hash(self.cfg, run, dataset)
        return self._finetune_hashes[run, dataset]

    # -- wildcards -----------------------------------------------------------------------------

    def wildcard_constraints(self) -> dict[str, str]:
        """What each wildcard of the rules may be: a dataset, mode, table... of the catalogue."""
        return {
            "dataset": _alternatives(STORE_DATASETS),
            "mode": _alternatives(PRETRAIN_MODES),
            "run": runs.RUN_PATTERN,
            "seed": r"0|[1-9][0-9]*",  # a seeded pre-training's (`seeds_pretrain`)
            "train": _alternatives(FINETUNE_DATASETS),
            "test": _alternatives(FINETUNE_DATASETS),
            "table": _alternatives(spec.TABLES),
            "figure": _alternatives(spec.FIGURES),
        }

    # -- data ----------------------------------------------------------------------------------

    def native_root(self, dataset: str) -> str:
        """The dataset's native tree: the synthetic one of the demo, or `data.roots.<dataset>`."""
        if self.cfg.data.synthetic:
            return f"{self.synth}/{DATASETS[dataset].folder}"
        root = getattr(self.cfg.data.roots, dataset)
        if root is None:
            raise PlanError(
                f"data.roots.{dataset}: not set, but a requested target needs "
                f"{DATASETS[dataset].folder}; set it in configs/local.yaml (see "
                "configs/local.example.yaml)"
            )
        return root

    def doctor_inputs(self) -> list[str]:
        """The doctor waits for the synthetic trees (the demo's; they pass)."""
        return [f"{self.synth}/synth.json"] if self.cfg.data.synthetic else []

    def manifest_inputs(self, dataset: str) -> list[str]:
        """The doctor's report when the doctor is on, else the synthetic trees (if any)."""
        if self.cfg.data.doctor.enabled:
            return [f"{self.doctor}/{dataset}.md"]
        return self.doctor_inputs()

    def preprocess_shards(self, dataset: str) -> int:
        """How many parts (Slurm jobs) `preprocess` splits a dataset into: data.preprocess_shards."""
        shards = self.cfg.data.preprocess_shards
        return shards.get(dataset, shards.get("default", 1))

    def preprocess_settings(self, dataset: str) -> str:
        """The store-settings flags of a dataset: short side, framing, the kept-frame stride."""
        store = self.cfg.data.store
        stride = store.frame_stride.get(dataset, 1)
        return (
            f"--short-side {store.short_side} --framing {store.framing.get(dataset, 'default')}"
            + (f" --frame-stride {stride}" if stride > 1 else "")
        )

    def shard_parts(self, dataset: str) -> list[str]:
        """The done-markers of a sharded dataset's parts (none for one run over every clip)."""
        n = self.preprocess_shards(dataset)
        if n == 1:
            return []
        return [
            f"{self.store}/{dataset}/parts/shard-{i:04d}-of-{n:04d}.done.json"
            for i in range(1, n + 1)
        ]

    def preprocess_merges(self, dataset: str) -> bool:
        """Whether the store table is the merge of finished parts (no clip work: it runs here)."""
        return self.preprocess_shards(dataset) > 1

    def preprocess_stage(self, dataset: str) -> str:
        if self.preprocess_merges(dataset):
            return f"{self.commands.unilearn} preprocess"
        return self.commands.cpu("preprocess")

    def preprocess_work(self, dataset: str, threads: int) -> str:
        if self.preprocess_merges(dataset):
            return f"--merge {self.preprocess_shards(dataset)}"
        return self.commands.cpu_workers(threads)

    def preprocess_threads(self, dataset: str) -> int:
        return 1 if self.preprocess_merges(dataset) else self.commands.cpu_threads(2)

    def preprocess_local_heavy(self, dataset: str) -> int:
        return 0 if self.preprocess_merges(dataset) else self.commands.cpu_local_heavy

    # -- pre-training --------------------------------------------------------------------------

    def pretrain_stores(self, mode: str) -> list[str]:
        """The store tables a pre-training mode reads (none, one or both of its sources)."""
        from unilearn.catalogue import pretrain_sources

        pt = self.cfg.pretrain
        sources = pretrain_sources(mode, pt.image_dataset, pt.video_dataset)
        return [self.store_table(d) for d in dict.fromkeys(d for d in sources if d)]

    def pretrain_dir(self, mode: str, seed: int | str | None = None) -> str:
        """`pretrain/<mode>`, or `pretrain/<mode>@seed=N` for another seed (`seeds_pretrain`)."""
        return str(layout.pretrain_dir(self.runs, seeds.pretrain_name(mode, seed)))

    def pretrain_checkpoint(self, mode: str, seed: int | None = None) -> str:
        """The checkpoint a mode's fine-tunings start from: the published file (every seed's),
        or ours: that of the config's seed, or of `seed`."""
        if mode in self.pretrain_init:
            return self.pretrain_init[mode]
        return f"{self.pretrain_dir(mode, seed)}/checkpoint.pt"

    def pretrain_seed_hash(self, seed: str) -> str:
        """The pre-training config hash of a seeded pre-training (a param: re-run on change)."""
        from unilearn.config import config_hash

        return config_hash(self.cfg.with_overrides([("seed", int(seed))]), "pretrain")

    # -- fine-tuning ---------------------------------------------------------------------------

    def experiment(self, run: str):
        """The config's experiment of a run (`unilearn@n_experts=4` -> experiments.unilearn)."""
        name = runs.parse_run(run).experiment
        if name not in self.cfg.experiments:
            raise PlanError(
                f"run {run}: no experiment {name!r} in the config "
                f"(experiments: {sorted(self.cfg.experiments)})"
            )
        return self.cfg.experiments[name]

    def finetune_inputs(self, run: str, train: str) -> dict[str, Any]:
        """The starting checkpoint and every store table the job reads: its DFER training set,
        the SFER one, and each test set."""
        experiment = self.experiment(run)
        tables = []
        if "dfer" in experiment.tasks and train != layout.SFER_TEST:
            tables.append(self.store_table(DATASETS[train].store_table))
        if "sfer" in experiment.tasks:
            tables.append(self.store_table(DATASETS[self.cfg.data.sfer_dataset].store_table))
        for test in layout.tests_of(train, experiment.tasks):
            tables.append(self.store_table(DATASETS[test].store_table))
        return {
            "init": self.pretrain_checkpoint(
                experiment.pretrain, seeds.pretrain_seed(self.cfg, run)
            ),
            "tables": sorted(set(tables)),
        }

    def finetune_outputs(self, run_dir: str, tests: list[str]) -> dict[str, str]:
        """checkpoint.pt and, for each test set and the reported weights (last, best, and val
        with a validation split: `layout.weights_of`), the predictions with their sidecars
        (what aggregate, tables and figures read)."""
        out = {"checkpoint": f"{run_dir}/checkpoint.pt"}
        for test in tests:
            for weights in layout.weights_of(self.cfg):
                name = layout.prediction_name(test, weights)
                out[f"{test}_{weights}"] = f"{run_dir}/{name}"
                for suffix in layout.PREDICTION_SIDECARS:
                    sidecar = name.removesuffix(".parquet") + suffix
                    out[f"{test}_{weights}{suffix.replace('.', '_')}"] = f"{run_dir}/{sidecar}"
        return out

    def finetune_dir(self, run: str, target: str) -> str:
        return str(layout.finetune_dir(self.runs, run, target))

    @staticmethod
    def fold_flag(target: str) -> str:
        """`--fold K` when the run is a fold of a cross-validated dataset."""
        _, fold = layout.parse_target(target)
        return "" if fold is None else f"--fold {fold}"

    def test_args(self, run: str, train: str) -> str:
        """`--test D` per test set of the run (`layout.tests_of`), its own first."""
        tests = layout.tests_of(train, self.experiment(run).tasks)
        return " ".join(f"--test {t}" for t in tests)

    def run_override_args(self, run: str) -> str:
        """The run's sweep point on the engine's command line (`runs.override_arg`)."""
        import shlex

        return " ".join(
            shlex.quote(runs.override_arg(o)) for o in runs.run_overrides(self.cfg, run)
        )

    @property
    def joint_runs(self) -> str:
        """The runs of experiments with both heads (an SFER and a DFER task), with their sweep
        points: fine-tuned on a single-split DFER dataset, they are also tested on AffectNet-7."""
        names = _alternatives(
            name for name, e in self.cfg.experiments.items() if {"sfer", "dfer"} <= set(e.tasks)
        )
        return rf"({names}){runs.SWEEP_POINT_PATTERN}{runs.SEED_PATTERN}"

    @staticmethod
    def single_split_dfer() -> str:
        return _alternatives(d for d in FINETUNE_DATASETS if not FOLDS[d] and d != layout.SFER_TEST)

    @staticmethod
    def fold_suffix() -> str:
        """`-foldK` of a cross-validated dataset's target, or nothing."""
        folds = sorted({k for ks in FOLDS.values() for k in ks})
        return rf"(-fold[{min(folds)}-{max(folds)}])?"

    # -- pooling and the report ----------------------------------------------------------------

    def aggregate_val_args(self, run: str, train: str, inputs, outputs) -> str:
        """`&& <unilearn> aggregate <val predictions> --out <.val.json> ...`, the third pool of
        the aggregate job when the config holds out a validation split; empty otherwise."""
        import shlex

        if "val" not in layout.weights_of(self.cfg):
            return ""
        files = " ".join(shlex.quote(str(p)) for p in inputs.val)
        return (f"&& {self.commands.unilearn} aggregate {files} --out "
                f"{shlex.quote(str(outputs.val))} {self.expect_folds(train)} "
                f"--run {shlex.quote(run)} {self.commands.config_args}")  # fmt: skip

    @staticmethod
    def expect_folds(train: str) -> str:
        """`--expect-folds N` for a cross-validated dataset: the pool must hold every fold."""
        return f"--expect-folds {len(FOLDS[train])}" if FOLDS[train] else ""

    def report_inputs(self, target: str) -> dict[str, list]:
        """A table's or figure's metrics (a table shows every reported weights, a figure the
        last), the predictions they pool, Figure 4's prediction sidecars, and the manifests of
        its datasets."""
        cells = spec.required_cells(target, self.cfg)
        weights = layout.weights_of(self.cfg) if target in spec.TABLES else ("last",)
        metrics = [
            layout.metrics_path(self.runs, c.run, c.train, c.test, w)
            for c in cells
            for w in weights
        ]
        # a table pairs its rows clip by clip, a sweep figure may compute a missing interval:
        # both read the predictions the metrics pooled
        predictions = [
            p
            for c in cells
            for w in weights
            for p in layout.predictions_for(self.runs, c.run, c.train, c.test, w)
        ]
        sidecars = []
        if target in ("figure4a", "figure4b"):  # they read what the test wrote beside
            for c in cells:
                for prediction in layout.predictions_for(self.runs, c.run, c.train, c.test):
                    sidecars.append(layout.prediction_sidecar(prediction, ".expert_usage.json"))
                    sidecars.append(layout.prediction_sidecar(prediction, ".centres.parquet"))
        tables = {DATASETS[c.train].store_table for c in cells}
        tables |= {DATASETS[c.test].store_table for c in cells}
        manifests = [f"{self.manifests}/{d}.parquet" for d in sorted(tables)]
        return {"metrics": metrics, "predictions": predictions, "sidecars": sidecars,
                "manifests": manifests}  # fmt: skip
