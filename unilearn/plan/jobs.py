"""The workflow's jobs worked out from the unilearn config: for each rule, the files it reads and
the arguments it passes (`workflow/rules/*.smk` only wire these to `unilearn`). Torch-free, and
built once per Snakemake invocation (`Plan.from_workflow_config`), so a misspelt key, a missing
published checkpoint or an unknown sweep point fails at parse time.

Paths are those of `unilearn.layout`; a run's sweep point is `unilearn.report.runs`.
Arguments are lists of shell words (`unilearn.plan.commands.Words`): a rule's params are its
re-run trigger, and a list of words does not change with the spacing of a command.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unilearn import layout
from unilearn.catalogue import (
    DATASETS,
    FINETUNE_DATASETS,
    FOLDS,
    PRETRAIN_MODES,
    STORE_CODECS,
    STORE_DATASETS,
)
from unilearn.plan.commands import StageCommands, Words, line
from unilearn.report import runs, seeds, spec


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
        run_root = str(layout.run_root(config["runs"], cfg.name))
        commands = StageCommands(
            python=python,
            configs=tuple(configs),
            overrides=tuple(overrides),
            launcher=config["launcher"] or cfg.launcher.name,
            submitit_cluster=config["submitit_cluster"],
            logs=str(layout.logs_dir(run_root)),
            threads=cfg.runtime.threads,
        )
        return cls(cfg, run_root, config["results"], commands, init)

    # -- directories ---------------------------------------------------------------------------

    @property
    def synth(self) -> str:
        return str(layout.synth_dir(self.cfg.data.workdir))

    @property
    def manifests(self) -> str:
        return str(layout.manifests_dir(self.cfg.data.workdir))

    @property
    def store(self) -> str:
        return str(layout.store_dir(self.cfg.data.workdir))

    @property
    def logs(self) -> str:
        return self.commands.logs

    def log(self, stage: str, *names: str) -> str:
        """A job's log file (`layout.log_path`)."""
        return str(layout.log_path(self.logs, stage, *names))

    def result(self, name: str, ext: str) -> str:
        return str(layout.result_path(self.results, name, ext))

    def synth_summary(self) -> str:
        return f"{self.synth}/{layout.SYNTH_SUMMARY}"

    def doctor_report(self, dataset: str) -> str:
        return str(layout.doctor_report(self.cfg.data.workdir, dataset))

    def manifest(self, dataset: str) -> str:
        return str(layout.manifest_path(self.manifests, dataset))

    def store_table(self, dataset: str) -> str:
        return str(layout.store_table(self.store, dataset))

    def shard_marker(self, dataset: str, shard: int | str, shards: int | str) -> str:
        return str(layout.shard_marker(self.store, dataset, shard, shards))

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
            "fold": layout.FOLD_SUFFIX,
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
        return [self.synth_summary()] if self.cfg.data.synthetic else []

    def manifest_inputs(self, dataset: str) -> list[str]:
        """The doctor's report when the doctor is on, else the synthetic trees (if any)."""
        if self.cfg.data.doctor.enabled:
            return [self.doctor_report(dataset)]
        return self.doctor_inputs()

    def preprocess_shards(self, dataset: str) -> int:
        """How many parts (Slurm jobs) `preprocess` splits a dataset into: data.preprocess_shards."""
        shards = self.cfg.data.preprocess_shards
        return shards.get(dataset, shards.get("default", 1))

    def preprocess_settings(self, dataset: str) -> Words:
        """The store-settings flags of a dataset: short side, framing, the kept-frame stride and
        the codec (the last two only where not every frame or not JPEG: the text a workflow run
        before them recorded)."""
        store = self.cfg.data.store
        stride = store.frame_stride.get(dataset, 1)
        framing = store.framing.get(dataset, "default")
        codec = store.codec.get(dataset, STORE_CODECS[0])
        return (
            ["--short-side", str(store.short_side), "--framing", framing]
            + (["--frame-stride", str(stride)] if stride > 1 else [])
            + (["--codec", codec] if codec != STORE_CODECS[0] else [])
        )

    def shard_parts(self, dataset: str) -> list[str]:
        """The done-markers of a sharded dataset's parts (none for one run over every clip)."""
        n = self.preprocess_shards(dataset)
        if n == 1:
            return []
        return [self.shard_marker(dataset, i, n) for i in range(1, n + 1)]

    def preprocess_merges(self, dataset: str) -> bool:
        """Whether the store table is the merge of finished parts (no clip work: it runs here)."""
        return self.preprocess_shards(dataset) > 1

    def preprocess_stage(self, dataset: str) -> Words:
        if self.preprocess_merges(dataset):
            return self.commands.here("preprocess")
        return self.commands.cpu("preprocess")

    def preprocess_work(self, dataset: str, threads: int) -> Words:
        if self.preprocess_merges(dataset):
            return ["--merge", str(self.preprocess_shards(dataset))]
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

    def pretrain_log(self, mode: str, seed: int | str | None = None) -> str:
        return self.log("pretrain", seeds.pretrain_name(mode, seed))

    def pretrain_checkpoint(self, mode: str, seed: int | str | None = None) -> str:
        """The checkpoint a mode's fine-tunings start from: the published file (every seed's),
        or ours: that of the config's seed, or of `seed`."""
        if mode in self.pretrain_init:
            return self.pretrain_init[mode]
        return str(layout.run_files(self.pretrain_dir(mode, seed)).checkpoint())

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

    def finetune_outputs(self, run: str, target: str, tests: list[str]) -> dict[str, str]:
        """checkpoint.pt and, for each test set and the reported weights (last, best, and val
        with a validation split: `layout.weights_of`), the predictions with their sidecars
        (what aggregate, tables and figures read)."""
        run_dir = layout.finetune_dir(self.runs, run, target)
        out = {"checkpoint": str(layout.run_files(run_dir).checkpoint())}
        for test in tests:
            for weights in layout.weights_of(self.cfg):
                prediction = run_dir / layout.prediction_name(test, weights)
                out[f"{test}_{weights}"] = str(prediction)
                for suffix in layout.PREDICTION_SIDECARS:
                    sidecar = layout.sidecar_path(prediction, suffix)
                    out[f"{test}_{weights}{suffix.replace('.', '_')}"] = str(sidecar)
        return out

    def finetune_params(self) -> dict[str, Any]:
        """The fine-tuning rules' params, each a function of the job's wildcards. The target is
        `{train}{fold}` (`dfew-fold3`: the fold suffix read by `layout.parse_fold` alone)."""

        def target(wc) -> str:
            return layout.target_name(wc.train, layout.parse_fold(wc.get("fold", "")))

        return dict(
            experiment=lambda wc: runs.parse_run(wc.run).experiment,
            fold=lambda wc: line(self.fold_flag(layout.parse_fold(wc.get("fold", "")))),
            out=lambda wc: str(layout.finetune_dir(self.runs, wc.run, target(wc))),
            tests=lambda wc: line(self.test_args(wc.run, wc.train)),
            run_overrides=lambda wc: line(self.run_override_args(wc.run)),
            config_hash=lambda wc: self.finetune_hash(wc.run, wc.train),
        )

    def finetune_log(self, run: str, target: str) -> str:
        return self.log("finetune", run, target)

    @staticmethod
    def fold_flag(fold: int | None) -> Words:
        """`--fold K` when the run is a fold of a cross-validated dataset."""
        return [] if fold is None else ["--fold", str(fold)]

    def test_args(self, run: str, train: str) -> Words:
        """`--test D` per test set of the run (`layout.tests_of`), its own first."""
        tests = layout.tests_of(train, self.experiment(run).tasks)
        return [word for t in tests for word in ("--test", t)]

    def run_override_args(self, run: str) -> Words:
        """The run's sweep point on the engine's command line (`runs.override_arg`)."""
        import shlex

        return [shlex.quote(runs.override_arg(o)) for o in runs.run_overrides(self.cfg, run)]

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

    # -- pooling and the report ----------------------------------------------------------------

    def aggregate_outputs(self) -> dict[str, str]:
        """The pooled metrics of each reported weights (`layout.weights_of`), as patterns."""
        return {w: str(layout.metrics_path(self.runs, "{run}", "{train}", "{test}", w))
                for w in layout.weights_of(self.cfg)}  # fmt: skip

    def aggregate_val_args(self, run: str, train: str, inputs, outputs) -> Words:
        """`&& <unilearn> aggregate <val predictions> --out <.val.json> ...`, the third pool of
        the aggregate job when the config holds out a validation split; empty otherwise."""
        import shlex

        if "val" not in layout.weights_of(self.cfg):
            return []
        files = [shlex.quote(str(p)) for p in inputs.val]
        return ["&&", *self.commands.unilearn, "aggregate", *files, "--out",
                shlex.quote(str(outputs.val)), *self.expect_folds(train), "--run",
                shlex.quote(run), *self.commands.config_args]  # fmt: skip

    @staticmethod
    def expect_folds(train: str) -> Words:
        """`--expect-folds N` for a cross-validated dataset: the pool must hold every fold."""
        return ["--expect-folds", str(len(FOLDS[train]))] if FOLDS[train] else []

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
                    sidecars.append(layout.sidecar_path(prediction, layout.EXPERT_USAGE))
                    sidecars.append(layout.sidecar_path(prediction, layout.CENTRES))
        tables = {DATASETS[c.train].store_table for c in cells}
        tables |= {DATASETS[c.test].store_table for c in cells}
        manifests = [self.manifest(d) for d in sorted(tables)]
        return {"metrics": metrics, "predictions": predictions, "sidecars": sidecars,
                "manifests": manifests}  # fmt: skip


def init_checkpoint(cfg, mode: str) -> Path | None:
    """Published weights as a pre-training: the checkpoint configured for `mode`
    (`pretrain.init[mode]`, e.g. the authors' dual-modal ViT-B for image+video, or MAE-DFER's
    VoxCeleb2 weights for video), or None when the mode is pre-trained by us. A configured file
    that does not exist is an error naming the key."""
    path = cfg.pretrain.init.get(mode)
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrain.init.{mode}: {path} does not exist (the published weights this mode's "
            "fine-tunings start from); fix the path or remove the key to pre-train this mode"
        )
    return path
