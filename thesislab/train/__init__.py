"""Training: models and schedules (the registries), batches, the engine, assembling and running a run."""
