"""What is learned: one class per task (losses, targets, decoding, metrics, artifacts), found by name."""
