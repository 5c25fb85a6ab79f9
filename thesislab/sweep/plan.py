"""The DVC side of a sweep: which train stages need training, the command each runs, and recording what
finished so that dvc.lock says what a serial `dvc repro` would.

Recording is `dvc commit` of each finished stage (DVC hashes its deps, params and outputs into dvc.lock and its
cached outputs into the cache, as `dvc repro` does after running a command), then `dvc repro`, which finds the
train stages up to date and runs the comparison. docs/design.md says why not the run-cache.
"""

import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from thesislab import config, io
from thesislab.errors import UserError

TRAIN = "train"  # the matrix stage in dvc.yaml: train@<schedule>-<seed>
STATE = Path(".sweep")  # logs and status files of the sweep's runs (git- and DVC-ignored)
COMPARISON = Path("metrics/comparison.json")  # the compare stage's --out (dvc.yaml): a sequential design's looks


@dataclass(frozen=True)
class Task:
    """One stale train stage, as the engines run it."""

    name: str  # <schedule>-<seed>
    stage: str  # train@<name>
    cmd: str  # the stage's command, exactly as dvc.yaml resolves it
    work: Path  # the run's working folder (--checkpoints): its checkpoint and live log
    out: Path  # the run's folder (--out)
    epochs: int
    key: str  # what the stage's outputs are made from (deps' hashes, params): checked again before recording

    @property
    def status(self) -> Path:
        return STATE / "runs" / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return STATE / "logs" / f"{self.name}.log"


def dvc(*args, capture=False):
    """A DVC command, as the user would type it, its output shown (or captured)."""
    sys.stdout.flush()
    result = subprocess.run([sys.executable, "-m", "dvc", *args], text=True,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if result.returncode != 0:
        tail = (result.stdout or "").strip().splitlines()[-1:] if capture else []
        raise UserError(f"dvc {' '.join(args)} failed (exit {result.returncode}){': ' + tail[0] if tail else ''}")
    return result.stdout


def _apply(overrides, target):
    """-S key=value onto the params file `target`, by DVC's own code, as `dvc exp run -S` applies them."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    for path, values in to_path_overrides(overrides).items():
        if Path(path).name != "params.yaml":
            raise UserError(f"-S {values[0]}: only params.yaml holds this pipeline's params")
        try:
            apply_overrides(str(target), values)
        except Exception as err:  # DVC's override errors carry Hydra's reason as their cause
            reason = str(err.__cause__ or err).splitlines()
            raise UserError(f"-S {' '.join(values)}: {'; '.join(reason[:2])}") from None


def params_with(overrides):
    """The params params.yaml would hold after -S, checked, with params.yaml left as it is."""
    if not overrides:
        return config.load()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "params.yaml"
        shutil.copyfile("params.yaml", copy)
        _apply(overrides, copy)
        return config.load(copy)


def set_params(overrides):
    """Write -S into params.yaml: a copy replaces it only once the params it holds pass every check."""
    if overrides:
        with io.atomic_path("params.yaml") as tmp:
            shutil.copyfile("params.yaml", tmp)
            _apply(overrides, tmp)
            config.load(tmp)


def _repo():
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        return Repo(".")
    except DvcException as err:
        raise UserError(f"dvc: {str(err).splitlines()[0]}") from None


@contextlib.contextmanager
def _dvc_errors():
    """DVC's own errors (its lock held by a `dvc repro` beside the sweep, a broken dvc.yaml, a param key missing
    from params.yaml) as one line."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as err:
        raise UserError(f"dvc: {str(err).splitlines()[0]}") from None


def _train_stages(repo):
    return [s for s in repo.index.stages if s.addressing.startswith(TRAIN + "@")]


def upstream_stages() -> list:
    """The stages the train matrix depends on (download, pathlist, stats), to run first, here."""
    import networkx as nx

    repo = _repo()
    with _dvc_errors():
        graph = repo.index.graph
        trains = _train_stages(repo)
        found = set()
        for stage in trains:
            found |= set(nx.descendants(graph, stage))  # DVC's graph points from a stage to what it depends on
    return sorted((s.addressing for s in found if s not in trains), key=lambda a: a)


def _key(stage) -> str:
    stage.save_deps()
    return json.dumps({"cmd": stage.cmd, "deps": {d.def_path: d.hash_info.to_dict() for d in stage.deps}},
                      sort_keys=True, default=str)


def _stale(stage) -> bool:
    """Whether a train stage must train: its command, deps or params differ from dvc.lock, or an output differs
    other than by a cached file that is merely absent. A fresh clone has the run folders (git) but not the
    model files (DVC's cache, not in git): its committed runs stand, as `dvc repro --allow-missing` keeps them."""
    if stage.changed_stage() or stage.changed_deps():
        return True
    for out in stage.outs:
        status = out.status().get(str(out))
        if status and not (out.use_cache and status in ("deleted", "not in cache")):
            return True
    return False


def missing_cached_outputs() -> list:
    """Cached outputs (model files) of up-to-date train stages that are not in this workspace."""
    repo = _repo()
    with _dvc_errors(), repo.lock:
        return [str(o) for s in _train_stages(repo) if not _stale(s) for o in s.outs
                if o.use_cache and o.status().get(str(o)) in ("deleted", "not in cache")]


def stale_tasks(epochs) -> list:
    """A Task for every train stage that must train (see _stale)."""
    from stages.train import parse_args

    repo = _repo()
    tasks = []
    with _dvc_errors(), repo.lock:
        for stage in _train_stages(repo):
            if not _stale(stage):
                continue
            args = parse_args(shlex.split(stage.cmd)[3:])  # python -m stages.train <args>
            name = stage.addressing.split("@", 1)[1]
            tasks.append(Task(name, stage.addressing, stage.cmd, Path(args.checkpoints), Path(args.out), epochs,
                              _key(stage)))
    return tasks


def unchanged(tasks) -> tuple:
    """(tasks whose deps and params are still what they were when the sweep started, those that changed)."""
    repo = _repo()
    with _dvc_errors(), repo.lock:
        now = {s.addressing: s for s in _train_stages(repo)}
        same = [t for t in tasks if t.stage in now and _key(now[t.stage]) == t.key]
    return same, [t for t in tasks if t not in same]


def record(tasks):
    """dvc commit the finished runs' stages: dvc.lock gets the entries `dvc repro` would have written."""
    if tasks:
        dvc("commit", "--force", "--quiet", *[t.stage for t in tasks])


def git_outputs() -> list:
    """What an experiment commit must carry that git does not track yet: the outputs that live in git (cache:
    false, not git-ignored: run folders, the comparison, figures) and the .gitignore files DVC writes beside
    cached ones. `dvc exp run` adds the outputs of the stages it ran; after a sweep it ran only compare."""
    repo = _repo()
    found = set()
    for stage in repo.index.stages:
        for out in stage.outs:
            path = Path(out.def_path)
            if not out.use_cache and path.exists() and not repo.scm.is_ignored(str(path.resolve())):
                found.add(str(path))
            elif out.use_cache and (path.parent / ".gitignore").exists():
                found.add(str(path.parent / ".gitignore"))
    return sorted(found)


def check_experiment_name(name):
    """Refuse, before any work, a name an experiment already has (as `dvc exp run -n` would, after training)."""
    if name and name in dvc("exp", "list", "--name-only", capture=True).split():
        raise UserError(f"-n {name}: an experiment of that name exists (dvc exp remove {name}, or another name)")


def save_experiment(name):
    """The workspace as a DVC experiment (`dvc exp save`), named like `dvc exp run -n` would name it."""
    include = [arg for path in git_outputs() for arg in ("--include-untracked", path)]
    dvc("exp", "save", *(["-n", name] if name else []), *include)
