"""Where a stage runs: here (`--launcher local`) or as a Slurm job (`--launcher submitit`).

`resources` (the flags and the `SlurmSpec` they resolve to, the CPU stages' launcher), `submit`
(submission, log streaming, cancel, requeue), `job` (what runs in the job), `lifeline`,
`estimate` (the FLOP-model time limit), `restart` (`--restart-if-config-changed`), `__main__`
(the thin submitter). A stage calls `rc = submit_if_requested(args, cfg.launcher.for_stage(STAGE))`
first thing in `main`; a non-None `rc` means it ran as a job.
"""
