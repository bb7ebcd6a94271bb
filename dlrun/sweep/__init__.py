"""Sweeps that finish, resume and account for themselves: job folders, the ledger, the failure policy.

Every job of `dlrun -m ...` appends one line to SWEEP_DIR/ledger.jsonl when it ends (overrides,
status, final metrics, wall time, error). Jobs are matched across launches by their overrides, not by
their number, so re-running a command with the same `hydra.sweep.dir` skips the completed jobs (their
folders are not touched: Hydra writes that job's .hydra files into a scratch folder, removed at once),
redoes the failed ones and resumes the interrupted ones from checkpoints/last.pt in their own folders.

`hydra.sweep.subdir` is `${dlrun_job_dir:${hydra.job.num}}`, the resolver below, which picks the folder.
Nothing here imports torch until a job trains.
"""
