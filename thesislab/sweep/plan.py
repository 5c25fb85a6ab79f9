"""The DVC side of a sweep: which train stages need training, the command each runs, and recording what
finished so that dvc.lock says what a serial `dvc repro` would.

Recording is `dvc commit` of each finished stage (DVC hashes its deps, params and outputs into dvc.lock and its
cached outputs into the cache, as `dvc repro` does after running a command), then `dvc repro`, which finds the
train stages up to date and runs the comparison. docs/design.md says why not the run-cache.
"""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from thesislab import config, io
from thesislab.errors import UserError
from thesislab.reproduce import Committed, Verdict, judge

TRAIN = "train"  # the matrix stage in dvc.yaml: train@<schedule>-<seed>
STATE = Path(".sweep")  # logs and status files of the sweep's runs (git- and DVC-ignored)
COMPARISON = Path("metrics/comparison.json")  # the compare stage's --out (dvc.yaml): a sequential design's looks


class _StateFiles:
    """An engine task's status file and log under .sweep/, by its name (the progress board and the engines read
    them there)."""

    @property
    def status(self) -> Path:
        return STATE / "runs" / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return STATE / "logs" / f"{self.name}.log"


@dataclass(frozen=True)
class Task(_StateFiles):
    """One stale train stage, as the engines run it."""

    name: str  # <schedule>-<seed>
    stage: str  # train@<name>
    cmd: str  # the stage's command, exactly as dvc.yaml resolves it
    work: Path  # the run's working folder (--checkpoints): its checkpoint and live log
    out: Path  # the run's folder (--out)
    model: Path  # the run's model file (--model)
    epochs: int
    key: str  # what the stage's outputs are made from (deps' hashes, params): checked again before recording
    committed: Committed = None  # a committed run trained again, into scratch outputs, to be checked against it
    # A committed run retrained in place because an output of it is missing or edited (its inputs unchanged): the md5
    # dvc.lock records for its model, which the new model is checked against.
    recorded_md5: str = None


@dataclass(frozen=True)
class Pack(_StateFiles):
    """Runs the sweep trains as one computation in one process (`python -m stages.train --pack` of their stages'
    own commands): one task for the engine, one worker, one torch import, one CUDA context. Its worker keeps each
    run's own status file and log as it would for the run alone, and marks each done as it finishes."""

    tasks: tuple
    width: int = None  # the pack's slots on CUDA (None: as many as its runs)

    @property
    def name(self) -> str:
        return f"pack-{self.tasks[0].name}+{len(self.tasks) - 1}"

    @property
    def cmd(self) -> str:
        width = ["--width", str(self.width)] if self.width else []
        return shlex.join(["python", "-m", "stages.train", "--pack", *width, *(t.cmd for t in self.tasks)])

    @property
    def epochs(self) -> int:
        return self.tasks[0].epochs


def packs(tasks, size, width=None) -> list:
    """The engine's tasks: the runs in packs of at most `size` (a run left alone is its own task, unless CUDA pads it
    to `width`). Runs pack only with runs that read the same data (a sweep's all share params.yaml): a pack of
    mixed configurations is never formed."""
    if size <= 1:
        return list(tasks)
    groups = {}
    for t in tasks:
        groups.setdefault(_data_args(t.cmd), []).append(t)
    found = []
    for group in groups.values():
        for start in range(0, len(group), size):
            chunk = tuple(group[start:start + size])
            found.append(chunk[0] if len(chunk) == 1 and not width else Pack(chunk, width))
    return found


def members(unit) -> list:
    """The runs an engine's task trains: a pack's, or the task itself."""
    return list(unit.tasks) if isinstance(unit, Pack) else [unit]


def _data_args(cmd) -> tuple:
    from stages.train import parse_args

    args = parse_args(shlex.split(cmd)[3:])
    return args.root, args.pathlist, args.stats, args.cache, args.weights


def dvc(*args, capture=False):
    """A DVC command, as the user would type it, its output shown (or captured)."""
    sys.stdout.flush()
    # Its own process group, stopped as a whole when this process is interrupted (Ctrl-C, or SIGTERM turned into
    # one): a stage command DVC started would otherwise go on writing into a folder being cleaned up.
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], text=True, start_new_session=True,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    try:
        stdout, _ = proc.communicate()
    except BaseException:
        stop_group(proc)
        raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout)
    if result.returncode != 0:
        lines = (result.stdout or "").strip().splitlines() if capture else []
        tail = [line for line in lines if line.startswith("ERROR")][-1:] or lines[-1:]  # DVC's reason, not a hint
        raise UserError(f"dvc {' '.join(args)} failed (exit {result.returncode}){': ' + tail[0] if tail else ''}")
    return result.stdout


def stop_group(proc, grace=20):
    """SIGINT to a process group, as a terminal's Ctrl-C would send it; SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


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
            _refuse_unknown_key(values, target, reason)
            raise UserError(f"-S {' '.join(values)}: {'; '.join(reason[:2])}") from None


def _refuse_unknown_key(values, target, reason):
    """Hydra answers a key params.yaml lacks with "To append to your config use +key=value", which the params
    check then refuses: say instead that the key is unknown, and which keys there are (the check's own words)."""
    if not any("To append to your config use +" in line for line in reason):
        return
    for value in values:
        try:
            _apply_plus(target, value)
            config.load(target)
        except UserError as err:
            raise UserError(f"-S {value}: {str(err).removeprefix(f'{target}: ').removeprefix('params.yaml: ')}") \
                from None
        except Exception:  # noqa: BLE001 - not this value (a key params.yaml has): try the next
            continue


def _apply_plus(target, value):
    """One override as Hydra's append (+key=value): what a key params.yaml lacks needs to be written at all."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(target), [value if value.startswith(("+", "~")) else "+" + value])


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


def default_remote():
    """The DVC remote `dvc push` and `dvc pull` use by default (`dvc remote add -d`), or None."""
    repo = _repo()
    with _dvc_errors():
        return repo.config.get("core", {}).get("remote")


def pull(paths) -> str:
    """`dvc pull` these outputs from the default remote: None when they all came, else DVC's reason in one line."""
    try:
        dvc("pull", *paths, capture=True)
    except UserError as err:
        return str(err)
    return None


def stale_tasks(epochs) -> list:
    """A Task for every train stage that must train (see _stale). One whose command, deps and params are still
    dvc.lock's (only an output was deleted or edited) carries the model md5 dvc.lock records, to be checked."""
    repo = _repo()
    with _dvc_errors(), repo.lock:
        return [_task(stage, epochs, recorded=not (stage.changed_stage() or stage.changed_deps()))
                for stage in _train_stages(repo) if _stale(stage)]


def committed_runs() -> list:
    """The runs dvc.lock records a train stage for, in its order."""
    import yaml

    try:
        lock = yaml.safe_load(Path("dvc.lock").read_text()) or {}
    except FileNotFoundError:
        return []
    return [name.split("@", 1)[1] for name in lock.get("stages", {}) if name.startswith(TRAIN + "@")]


def pipeline_runs() -> list:
    """The runs dvc.yaml's train matrix has now (dvc.lock may record more: a matrix that shrank keeps its entries)."""
    repo = _repo()
    with _dvc_errors():
        return [s.addressing.split("@", 1)[1] for s in _train_stages(repo)]


def changed_train_stages(names) -> list:
    """Those of the named runs' train stages whose command, deps or params differ from dvc.lock."""
    repo = _repo()
    with _dvc_errors(), repo.lock:
        return [s.addressing for s in _train_stages(repo) if s.addressing.split("@", 1)[1] in names
                and (s.changed_stage() or s.changed_deps())]


REBUILD = STATE / "rebuild"  # where committed runs are trained again: <run>/{model.pt,run,work,live}
OUTPUT_FLAGS = {"--model": "model.pt", "--out": "run", "--checkpoints": "work", "--live": "live"}


def rebuild_tasks(epochs, names=None) -> list:
    """A Task that trains a committed run again into scratch outputs, to be checked against what dvc.lock records
    before anything is put in place: for each up-to-date train stage whose model file is not here (a fresh
    clone), or for the named runs whose command, deps and params are dvc.lock's (verify)."""
    repo = _repo()
    tasks = []
    with _dvc_errors(), repo.lock:
        for stage in _train_stages(repo):
            name = stage.addressing.split("@", 1)[1]
            wanted = (name in names and not (stage.changed_stage() or stage.changed_deps())) if names is not None \
                else not _stale(stage) and _model_missing(stage)
            if wanted:
                tasks.append(_task(stage, epochs, scratch=REBUILD / name))
    return tasks


def _model_missing(stage) -> bool:
    return any(o.use_cache and o.status().get(str(o)) in ("deleted", "not in cache") for o in stage.outs)


def _task(stage, epochs, scratch=None, recorded=False) -> Task:
    """The engines' task for a train stage; with `scratch`, its outputs go there instead (its command rewritten)
    and the task carries what the committed run's are; `recorded`: it carries the model md5 dvc.lock records."""
    from stages.train import parse_args

    tokens = shlex.split(stage.cmd)
    args = parse_args(tokens[3:])  # python -m stages.train <args>
    name = stage.addressing.split("@", 1)[1]
    committed = None
    if scratch is not None:
        model_out = next(o for o in stage.outs if o.def_path == args.model)
        committed = Committed(model_out.hash_info.value, Path(args.model), Path(args.out))
        for flag, rel in OUTPUT_FLAGS.items():
            tokens[tokens.index(flag) + 1] = str(Path(scratch) / rel)
        args = parse_args(tokens[3:])
    cmd = stage.cmd if scratch is None else shlex.join(tokens)
    md5 = _recorded_model_md5(stage, args.model) if recorded else None
    return Task(name, stage.addressing, cmd, Path(args.checkpoints), Path(args.out), Path(args.model), epochs,
                _key(stage), committed, md5)


def _recorded_model_md5(stage, model):
    out = next((o for o in stage.outs if o.def_path == model), None)
    return out.hash_info.value if out is not None and out.hash_info else None


def unchanged(tasks) -> tuple:
    """(tasks whose deps and params are still what they were when the sweep started, those that changed)."""
    repo = _repo()
    with _dvc_errors(), repo.lock:
        now = {s.addressing: s for s in _train_stages(repo)}
        same = [t for t in tasks if t.stage in now and _key(now[t.stage]) == t.key]
    return same, [t for t in tasks if t not in same]


def adopt(task) -> "Verdict":
    """A committed run trained again, put in place: when its model is the committed one to the bit, only the model
    file (the committed run folder stays, the committer's timings with it, and dvc.lock reads as before); else its
    model and folder both, as this machine's result."""
    verdict = judge(task.name, task.model, task.out, task.committed)
    with io.together():
        if not verdict.identical:
            with io.atomic_dir(task.committed.run) as tmp:
                shutil.copytree(task.out, tmp, dirs_exist_ok=True)
        with io.atomic_path(task.committed.model) as tmp:
            shutil.copyfile(task.model, tmp)
    return verdict


def record(tasks):
    """dvc commit the finished runs' stages: dvc.lock gets the entries `dvc repro` would have written."""
    if tasks:
        # Captured, not --quiet: DVC's reason (its lock held by a `dvc repro` beside the sweep, a full disk) ends
        # the one-line error instead of being swallowed.
        dvc("commit", "--force", *[t.stage for t in tasks], capture=True)


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
    # --all-commits: a name taken on another baseline makes `dvc metrics diff NAME` ambiguous later.
    if name and name in dvc("exp", "list", "--all-commits", "--name-only", capture=True).split():
        raise UserError(f"-n {name}: an experiment of that name exists (dvc exp remove {name}, or another name)")


def check_git_identity():
    """An experiment is a git commit: refuse, before any work, when there is no name and email to sign it with
    (DVC would fail only after training, with "unexpected error"). DVC's git backend takes them from the
    GIT_AUTHOR_*/GIT_COMMITTER_* variables or git's config and, unlike git, never guesses from $EMAIL or the
    host name."""

    def configured(key):
        return subprocess.run(["git", "config", key], capture_output=True, text=True).stdout.strip()

    for role in ("AUTHOR", "COMMITTER"):
        name = os.environ.get(f"GIT_{role}_NAME") or configured("user.name")
        email = os.environ.get(f"GIT_{role}_EMAIL") or configured("user.email")
        if name and email:
            continue
        raise UserError("git has no name and email to save the experiment with: git config --global user.name "
                        "'Your Name' && git config --global user.email you@example.com")


def save_experiment(name):
    """The workspace as a DVC experiment (`dvc exp save`), named like `dvc exp run -n` would name it."""
    include = [arg for path in git_outputs() for arg in ("--include-untracked", path)]
    dvc("exp", "save", *(["-n", name] if name else []), *include)
