"""One thin script per pipeline stage: parse the paths dvc.yaml passes, load params, call the library."""
