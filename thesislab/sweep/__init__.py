"""Many runs at once: the train matrix fanned out over a machine's GPUs and cores, a SLURM cluster or a Ray
cluster, and gathered back into DVC as if `dvc repro` had trained it.

    python -m thesislab.sweep [--engine local|slurm|ray] [-S key=value ...] [-n name]

The engine schedules; this package only says what to run (each stale train stage's own command from dvc.yaml,
unchanged) and records what finished with `dvc commit`, then lets `dvc repro` run the comparison. Modules:
plan (the DVC side), engines (local, slurm, ray_engine), worker (what each task runs), board (progress).
"""

from thesislab import arithmetic

# The sweep and verify import numpy (and torch) for their own bookkeeping and compute nothing a run's numbers depend
# on; each train stage they start pins its own arithmetic (stages/__init__.py, stages/train.py) before it loads
# either. Pinning numpy here too, before it loads, keeps even the bookkeeping on the stages' kernels, and never
# refuses: imported after numpy (a notebook, a test), it only passes the pinned environment on to its children.
arithmetic.pin_numpy(strict=False)
