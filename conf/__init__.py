"""dlrun's config tree (Hydra config groups as YAML), shipped inside the package as `dlrun.conf`."""
