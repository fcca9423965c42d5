"""flowhawk model package: features, windows, the MindSpore detector networks, training, evaluation,
baselines, registry and refresh. No Prefect imports in model/ (flows/ does the wiring)."""
