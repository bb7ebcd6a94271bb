"""Using a trained run: predictions (`Predictor`), inputs from files, outputs to files, exported models."""
