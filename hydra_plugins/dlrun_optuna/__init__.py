"""dlrun's Optuna sweeper for Hydra (hydra/sweeper=dlrun_optuna)."""
