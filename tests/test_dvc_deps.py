"""dvc.yaml cannot drift from the code: each stage's deps are exactly the project modules its script loads.

A module a stage loads but does not depend on means `dvc repro` says "up to date" after that module changed;
a module it depends on but never loads means needless reruns. Each stage's entry point is imported in a fresh
interpreter (with the library its main() loads later, load_library()) and the project's own modules in sys.modules are compared with the stage's deps. The checkpoint
fingerprint hashes the same set (checkpoint.loaded_project_files), so DVC and resume agree on "the code changed".
"""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from thesislab import files
from thesislab.comparison import curves

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]
CODE = ("thesislab", "stages")

LIST_LOADED = """
import importlib, sys
from pathlib import Path
module = importlib.import_module(sys.argv[1])
getattr(module, "load_library", lambda: None)()  # what main() loads once the arithmetic is pinned
root = Path.cwd().resolve()
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None)
    if f and f.endswith(".py") and Path(f).resolve().is_relative_to(root):
        rel = Path(f).resolve().relative_to(root)
        if rel.parts[0] in ("thesislab", "stages"):
            print(rel.as_posix())
"""


def entry_module(stage):
    args = shlex.split(stage["cmd"].replace("\n", " "))
    return args[args.index("-m") + 1]


def loaded_by(module):
    out = subprocess.run([sys.executable, "-c", LIST_LOADED, module], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    return set(out.stdout.split())


def code_deps(stage):
    """The .py files a stage's deps cover (a folder dep covers every .py file in it)."""
    covered = set()
    for dep in stage["deps"]:
        path = ROOT / dep
        if dep.split("/")[0] not in CODE:
            continue
        if path.is_dir():
            covered |= {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")}
        else:
            assert path.is_file(), f"dvc.yaml names {dep}, which does not exist"
            covered.add(dep)
    return covered


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_modules_its_code_loads(name):
    loaded = loaded_by(entry_module(STAGES[name]))
    deps = code_deps(STAGES[name])
    assert sorted(loaded - deps) == [], f"{name} loads modules its dvc.yaml deps miss"
    assert sorted(deps - loaded) == [], f"{name} depends on modules it never loads (needless reruns)"


def test_top_level_plots_and_metrics_name_what_the_stages_write():
    definitions = [next(iter(p.values())) for p in DVC_YAML["plots"] if isinstance(p, dict)]
    curve_files = {file for d in definitions if "y" in d for file in d["y"]}
    folder = shlex.split(STAGES["compare"]["cmd"])[-1]
    assert curve_files == {f"{folder}/{q}.csv" for q in curves.QUANTITIES}
    live = shlex.split(STAGES["train"]["cmd"].replace("\n", " "))
    live = live[live.index("--live") + 1]
    assert f"{live}/{files.METRICS}" in DVC_YAML["metrics"]
    # The live run's per-epoch files are no top-level plot: across experiments they would compare whichever runs
    # trained last.
    assert not any(f"{live}/{files.EPOCHS}" in str(p) for p in DVC_YAML["plots"])


def test_run_folders_are_named_by_files_run_name():
    cmd = STAGES["train"]["cmd"]
    assert f"--out metrics/runs/{files.run_name('${item.schedule}', '${item.seed}')}" in cmd
    assert Path(ROOT / ".dvc" / "plots" / "mean_band.json").is_file()
