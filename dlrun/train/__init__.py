"""Training: the run pipeline, the trainer and its loop, callbacks, loggers, checkpoints, the run folder."""
