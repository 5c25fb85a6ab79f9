"""Shared test helpers: tiny image folders, tiny configs, and throwaway copies of the project for DVC runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")  # two test workers share two cores (set before torch loads)
sys.path.insert(0, str(ROOT))
from thesislab import arithmetic  # noqa: E402

# The tests make data and train in this process too, as the stages would: portable arithmetic, pinned before
# numpy and torch load.
arithmetic.pin(True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from thesislab import config, plots_page  # noqa: E402


def pytest_collection_modifyitems(items):
    """The tests marked `first` (many minutes each) are collected before all others, so that a worker starts them
    first (make test-slow keeps xdist to the collection order): started last, one would run alone while the other
    worker idles. (A stable sort: the rest keep their order.)"""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


def default_params() -> dict:
    """The project's params as the code defines them (params.yaml as shipped equals them: test_config checks it).
    Never the workspace's params.yaml, which a user's experiments change: no test depends on them."""
    return config.Config().to_dict()


def committed(rel) -> str:
    """A file of the project as last committed (the working copy outside a git checkout): what a test of the
    shipped file reads, whatever the user's experiments have since written there."""
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (ROOT / rel).read_text()


# Small enough for seconds of CPU, big enough to train: the default pipeline shrunk.
TINY_PARAMS = {
    "seeds": [0],
    "speedsigns": {"train_per_class": 12, "test_per_class": 4, "size": 16, "seed": 0},
    "image_size": 16,
    "batch_size": 16,
    "epochs": 3,
    "checkpoint_every": 1,
    "engine": {"eval_batch_size": 64},
}


def make_image_folder(root, classes=("cat", "dog"), per_split=(3, 2), size=8, seed=0):
    """<root>/{train,test}/<class>/<i>.png with random pixels; returns root."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_split):
        for c in classes:
            d = Path(root) / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return Path(root)


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def tiny_config(**over):
    return config.from_dict(merge(default_params(), merge(TINY_PARAMS, over)))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The speed signs at 16 px, 12 train and 4 test images a class, with path lists and stats."""
    from thesislab import files
    from thesislab.data import layout, speedsigns
    from thesislab.data.stats import channel_stats

    d = tmp_path_factory.mktemp("data")
    speedsigns.generate(d / "raw", {"train": 12, "test": 4}, 16, seed=0, workers=1, progress=False)
    found = layout.scan(d / "raw")
    files.write_pathlists(found.classes, found.files, d / "pathlist")
    files.write_stats(d / "stats.json", channel_stats([d / "raw" / p for p, _ in found.files["train"]], 16,
                                                      workers=1, progress=False))
    return d


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    # Pipeline outputs of this checkout are not part of a fresh project.
    skip = ("dvc.lock", "metrics/", "plots/", "data/raw/", "data/pathlist", "models/", "results/")
    keep = ("data/raw/.gitignore",)  # part of the project: it keeps the (uncached) images out of git
    return [f for f in out if f and (f in keep or not f.startswith(skip)) and (ROOT / f).is_file()]


def ran(result):
    """The stages that ran, less the params check: it reruns whenever params.yaml differs from the version it
    last checked (a fraction of a second; it writes only its stamp), so it is not work done for nothing."""
    return [line.split("'")[1] for line in result.stdout.splitlines()
            if line.startswith("Running stage '") and line.split("'")[1] != "check"]


class Project:
    """A copy of the project in its own git repo, with commands run from its root."""

    def __init__(self, path):
        self.path = Path(path)
        venv_bin = str(Path(sys.executable).parent)
        # One thread a process: two test files run at once on two cores, and tiny models gain nothing from more.
        self.env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
        self.env.pop("PYTHONPATH", None)

    def run(self, *cmd, check=True, timeout=600):
        result = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args, **kw):
        return self.run(sys.executable, "-m", "dvc", *args, **kw)

    def git(self, *args, **kw):
        return self.run("git", *args, **kw)

    def set_params(self, **over):
        p = self.path / "params.yaml"
        p.write_text(yaml.safe_dump(merge(yaml.safe_load(p.read_text()), over), sort_keys=False))

    def read(self, rel):
        return (self.path / rel).read_text()


def make_project(dest, **params):
    dest = Path(dest)
    for f in tracked_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    page = dest / plots_page.TEMPLATE  # .dvc/config names it; ignored by git, so not among the tracked files
    if (ROOT / plots_page.TEMPLATE).is_file():
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / plots_page.TEMPLATE, page)
    else:
        plots_page.write(page)
    proj = Project(dest)
    proj.git("init", "-q", "-b", "main")
    proj.git("config", "user.name", "Test")
    proj.git("config", "user.email", "test@example.com")
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(default_params(), merge(TINY_PARAMS, params)),
                                                     sort_keys=False))
    proj.git("add", "-A")
    proj.git("commit", "-qm", "tiny project")
    return proj


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "proj")


def fake_run(runs_dir, schedule, seed, rows, config="c", predictions=((0, 0), (1, 1), (1, 0)), classes=("cat", "dog")):
    """A finished run's folder, written by the train stage's own logger (DVCLive) from made-up epoch rows.

    rows: dicts with any of files.EPOCH_COLUMNS (the rest default); returns files.Run."""
    from thesislab import files
    from thesislab.train.log import LiveLog, summarize, write_run

    defaults = {"train_loss": 1.0, "train_acc": 50.0, "val_loss": 1.0, "val_acc": None, "test_loss": 1.0,
                "seconds": 1.0, "train_seconds": 1.0, "images": 10}
    rows = [{**defaults, "epoch": e, **row} for e, row in enumerate(rows, 1)]
    name = files.run_name(schedule, seed)
    live = Path(runs_dir).parent / f"live-{name}"
    log = LiveLog(live, Path(runs_dir).parent / "live-view", name, rows)
    log.finish(summarize(rows, "max_epochs", schedule=schedule, seed=seed, model="m", device="cpu", config=config))
    write_run(Path(runs_dir) / name, live, [a for a, _ in predictions], [p for _, p in predictions], list(classes))
    return files.read_run(runs_dir, name)


# Slow enough to interrupt at a checkpoint of a test's choosing (batch 2: about 0.1 s an epoch), tiny all the same.
SLOW = {"epochs": 20, "batch_size": 2, "loss_stop": 0, "checkpoint_every": 1}


@pytest.fixture(scope="session")
def slow_serial(tmp_path_factory):
    """A serial `dvc repro` of the SLOW params: what every interrupted or remote sweep must land as."""
    project = make_project(tmp_path_factory.mktemp("serial") / "proj", **SLOW)
    project.dvc("repro")
    return project
