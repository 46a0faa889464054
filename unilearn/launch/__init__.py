"""Where a GPU stage runs: here (`--launcher local`) or as a Slurm job (`--launcher submitit`).

Stages call `add_launcher_arguments(parser)` in their `add_arguments` and, first thing in `main`,
`rc = submit_if_requested(args, cfg.launcher)`; a non-None `rc` means the stage ran as a job.
"""

from unilearn.launch.resources import SlurmResources, add_launcher_arguments, resolve_resources
from unilearn.launch.restart import restart_if_config_changed
from unilearn.launch.submit import job_argv, run_as_job, submit_if_requested

__all__ = [
    "SlurmResources",
    "add_launcher_arguments",
    "job_argv",
    "resolve_resources",
    "restart_if_config_changed",
    "run_as_job",
    "submit_if_requested",
]
