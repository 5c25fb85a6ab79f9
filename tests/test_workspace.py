"""make test's verdicts do not depend on the user's workspace. After the README's experiments params.yaml holds
their values (`dvc exp run -S` writes them there, and they stay): here another lr and a sequential design
started on three seeds, which the params check refuses. A sample of the suite runs in a copy of the project
whose workspace is left so, and must pass as it does on a fresh clone.

Slow (a pytest inside a pytest, about a minute): make test-slow and CI run it.
"""

import subprocess
import sys

import pytest
import yaml
from conftest import committed, make_project

pytestmark = pytest.mark.slow

SAMPLE = ["tests/test_config.py", "tests/test_compare.py", "tests/test_sweep_units.py", "tests/test_portable.py"]


def experimented(params: dict) -> dict:
    """params.yaml as a user's experiments leave it: values no test expects, one the params check refuses."""
    params = {**params, "lr": 0.05, "seeds": [0, 1, 2], "epochs": 7, "model": "lenet"}
    params["compare"] = {**params["compare"], "sequential": {**params["compare"]["sequential"], "max_seeds": 10}}
    return params


def test_a_sample_of_the_suite_passes_in_a_workspace_left_by_experiments(tmp_path):
    project = make_project(tmp_path / "ws")
    for shipped in ("params.yaml", "dvc.lock"):  # as shipped: not the tests' tiny params, and the committed lock
        (project.path / shipped).write_text(committed(shipped))
    project.git("add", "-A")
    project.git("commit", "-qm", "the project as shipped")
    params = project.path / "params.yaml"
    params.write_text(yaml.safe_dump(experimented(yaml.safe_load(params.read_text())), sort_keys=False))
    refused = project.run(sys.executable, "-c", "from thesislab import config; config.load()", check=False)
    assert "a sequential design's first look needs at least 5 seeds" in refused.stderr  # the workspace is as said

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *SAMPLE],
                          cwd=project.path, env=project.env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]
