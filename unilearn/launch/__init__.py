"""Where a stage runs: here (`--launcher local`) or as a Slurm job (`--launcher submitit`).

`resources` (the flags and the `SlurmSpec` they resolve to, the CPU stages' launcher), `submit`
(submission, log streaming, cancel, requeue), `job` (what runs in the job), `lifeline`,
`estimate` (the FLOP-model time limit), `restart` (`--restart-if-config-changed`), `__main__`
(the thin submitter). A stage calls `rc = submit_if_requested(args, cfg.launcher.for_stage(STAGE))`
first thing in `main`; a non-None `rc` means it ran as a job.
"""

# The training engines call `launch.submit_if_requested` and `launch.restart_if_config_changed`.
from unilearn.launch.restart import restart_if_config_changed
from unilearn.launch.submit import submit_if_requested

__all__ = ["restart_if_config_changed", "submit_if_requested"]
