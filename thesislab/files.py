"""The files the stages hand to each other: every name and format is defined here, and read and written here.

dvc.yaml names the folders and files each stage writes (a path is written once, there, and passed in); the
names inside those folders, and what each file holds, are defined below and nowhere else.

    dataset     <raw>/manifest.tsv               written by download beside the images; what pathlist, stats
                                                 and train depend on in dvc.yaml
    path lists  <pathlist>/train.txt, test.txt   written by pathlist; read by stats, train, predict
                <pathlist>/classes.txt
    stats       stats.json                       written by stats; read by train
    a run's     <work>/last.pt                   written by train while the run is unfinished (its checkpoint
    work                                         and DVCLive's files); deleted when it finishes. Not a DVC
                <work>/live/                     output: a sweep's workers resume from it, DVC never sees it
    a run       <run>/metrics.json               written by train@<schedule>-<seed> (through DVCLive);
                <run>/plots/metrics/<column>.tsv    read by compare
                <run>/predictions.csv
"""

import csv
import hashlib
import io as _io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from thesislab import io
from thesislab.errors import UserError

SPLITS = ("train", "test")

# --- the dataset's manifest: one `relative/path<TAB>bytes<TAB>md5` line per image, sorted --------------------
# One small file that changes exactly when an image of the dataset does. The stages that read the images depend
# on it instead of on the image folder, so DVC verifies one file for them, not every image again (60,000 files
# cost it seconds a stage); the download stage's own output, the image folder, is still verified as a whole.

MANIFEST = "manifest.tsv"


def write_manifest(root, entries):
    """entries: [(relative posix path, bytes, md5 hex)], written sorted, so the same images are the same bytes."""
    io.write_text(Path(root) / MANIFEST, "".join(f"{rel}\t{size}\t{md5}\n" for rel, size, md5 in sorted(entries)))


# --- path lists (the thesis's chapter 4.2): one `relative/path<TAB>label` line per image ----------------------

CLASSES = "classes.txt"


def pathlist_file(folder, split) -> Path:
    return Path(folder) / f"{split}.txt"


def write_pathlists(classes, files, folder):
    """<folder>/train.txt and test.txt from files = {split: [(relative posix path, label)]}, and classes.txt
    (one class name a line, in label order). Paths use '/', so a list is the same bytes on every machine."""
    for split in SPLITS:
        io.write_text(pathlist_file(folder, split), "".join(f"{p}\t{label}\n" for p, label in files[split]))
    io.write_text(Path(folder) / CLASSES, "".join(f"{name}\n" for name in classes))


def read_classes(folder) -> tuple:
    path = Path(folder) / CLASSES
    try:
        names = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    except OSError as err:
        raise UserError(f"{path}: cannot read class names ({err.strerror})") from None
    if len(names) < 2:
        raise UserError(f"{path}: needs at least 2 class names, found {len(names)}")
    return names


def read_pathlist(folder, split, root, num_classes) -> list:
    """[(absolute path, label)] for every line of a split's list, each checked: a label in range, a relative
    path that stays inside `root`, a file that exists. A bad line raises UserError naming the list and line."""
    list_file, root = pathlist_file(folder, split), Path(root)
    real_root = os.path.realpath(root)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"{list_file}: cannot read path list ({err.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{list_file}: not a UTF-8 text path list") from None
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{list_file}:{n}"
        rel, label = _parse_pathlist_line(line, where, num_classes)
        path = root / rel
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) != real_root:
            raise UserError(f"{where}: {rel} leads outside the dataset folder {root}; refused")
        if not os.path.isfile(real):
            raise UserError(f"{where}: {path}: no such image file")
        entries.append((str(path), label))
    if not entries:
        raise UserError(f"{list_file}: path list is empty")
    return entries


def _parse_pathlist_line(line, where, num_classes):
    parts = line.split("\t")
    if len(parts) != 2:
        raise UserError(f"{where}: expected 'relative/path<TAB>label', got {line!r}")
    rel, label = parts
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts:
        raise UserError(f"{where}: {rel!r} must be a path relative to the dataset folder, without '..'")
    try:
        label = int(label)
    except ValueError:
        raise UserError(f"{where}: label {label!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise UserError(f"{where}: label {label} out of range 0..{num_classes - 1}")
    return rel, label


def test_set_digest(pathlist_folder, root) -> str:
    """What a run was tested on, as one short hash: the test path list (paths and labels, in order), the class
    names, and each test image's size and md5 from the dataset's manifest where there is one. Two experiments
    compare by seed only when theirs agree."""
    h = hashlib.sha256()
    test_list = pathlist_file(pathlist_folder, "test").read_bytes()
    h.update(test_list)
    h.update((Path(pathlist_folder) / CLASSES).read_bytes())
    manifest = Path(root) / MANIFEST
    if manifest.is_file():
        wanted = {line.split("\t", 1)[0] for line in test_list.decode("utf-8").splitlines() if line}
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.split("\t", 1)[0] in wanted:
                h.update(line.encode() + b"\n")
    return h.hexdigest()[:16]


# --- stats.json: {"mean": [r, g, b], "std": [r, g, b], "count": images, "pixels": per channel}, [0, 1] units --


def write_stats(path, stats: dict):
    io.write_json(path, stats)


def read_normalization(path) -> dict:
    """{"mean": [3 floats], "std": [3 positive floats]}: what training normalises with."""
    try:
        stats = json.loads(Path(path).read_text())
        mean, std = [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: unreadable stats ({err}); rerun the stats stage") from None
    if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise UserError(f"{path}: stats need 3 finite means and 3 positive stds; rerun the stats stage")
    return {"mean": mean, "std": std}


# --- a training run's working folder: what an unfinished run leaves, read by its resumption and the sweep ------

CHECKPOINT, RUN_LOG = "last.pt", "live"


def checkpoint_file(work) -> Path:
    return Path(work) / CHECKPOINT


def run_log_folder(work) -> Path:
    """DVCLive's folder for the run while it trains: its metrics.json says the epoch reached (step)."""
    return Path(work) / RUN_LOG


# --- a training run's folder ----------------------------------------------------------------------------------

# DVCLive's layout: a summary, and one `step<TAB>value` file per per-epoch column (step is the epoch).
METRICS, EPOCHS, PREDICTIONS = "metrics.json", "plots/metrics", "predictions.csv"
# The per-epoch columns. `lr` is the rate the epoch trained at; accuracies are percent; a value that is
# undefined (no validation split, NaN after divergence) has no line, and reads as None.
EPOCH_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds")
TIMING_KEYS = ("train_seconds", "images_per_second", "seconds")  # differ between identical runs


def md5_of(path) -> str:
    """A file's md5, read a block at a time (dvc.lock's model hashes, a weights file's)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_name(schedule, seed) -> str:
    """The name of a (schedule, seed) run: its stage is train@<name>, its folder <runs>/<name>."""
    return f"{schedule}-{seed}"


# The line the train stage prints once a run's model and folder are written (its summary follows): a pack's
# worker (sweep/worker.py) marks each of its runs done by it, while the others train on.
FINISHED = "train@{name}: stopped by"


@dataclass(frozen=True)
class Run:
    """What one finished training run left in its folder."""

    name: str
    rows: list  # one dict per epoch, EPOCH_COLUMNS (None for undefined values)
    summary: dict  # metrics.json
    folder: Path

    @property
    def predictions(self) -> Path:
        return self.folder / PREDICTIONS


def epoch_file(column) -> str:
    """A per-epoch column's file, relative to its run folder: a `step<TAB>column` header, then a line per epoch."""
    return f"{EPOCHS}/{column}.tsv"


def add_unlogged_columns(folder):
    """A header-only file for each column DVCLive never logged (val_* with monitor: test), so that every run
    folder holds the same files: `dvc exp apply` leaves files the applied experiment lacks in place, and a stray
    val_acc.tsv from another experiment would make DVC see the run as changed and train it again."""
    for column in EPOCH_COLUMNS[1:]:
        path = Path(folder) / epoch_file(column)
        if not path.exists():
            path.write_text(f"step\t{column}\n")


def read_epochs(folder, read_text=None) -> list:
    """The per-epoch rows of a run folder (read_text(relative path) reads from elsewhere, e.g. git). A file that
    is not `step<TAB>column` lines of numbers raises ValueError naming it."""
    read_text = read_text or (lambda rel: (Path(folder) / rel).read_text())
    by_epoch = {}
    for column in EPOCH_COLUMNS[1:]:
        rel = epoch_file(column)
        try:
            text = read_text(rel)
        except FileNotFoundError:
            continue  # never logged: undefined in every epoch
        reader = csv.DictReader(_io.StringIO(text), delimiter="\t")
        if reader.fieldnames != ["step", column]:
            raise ValueError(f"{rel}: its header is {reader.fieldnames}, not step<TAB>{column}")
        for n, row in enumerate(reader, 2):
            try:
                by_epoch.setdefault(int(row["step"]), {})[column] = float(row[column])
            except (TypeError, ValueError):
                raise ValueError(f"{rel}:{n}: not a step and a number: {row}") from None
    return [{"epoch": e, **{c: by_epoch[e].get(c) for c in EPOCH_COLUMNS[1:]}} for e in sorted(by_epoch)]


def write_predictions(folder, labels, predictions, classes):
    """actual,predicted class names per test image, in path-list order: DVC's confusion template reads this."""
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("actual", "predicted"))
    writer.writerows((classes[a], classes[p]) for a, p in zip(labels, predictions))
    io.write_text(Path(folder) / PREDICTIONS, buf.getvalue())


def read_predictions(path) -> list:
    with open(path, newline="") as f:
        return [(r["actual"], r["predicted"]) for r in csv.DictReader(f)]


# What the comparison reads from a run's metrics.json, and the type each must have (None: may be null).
SUMMARY_TYPES = {"test_acc": (float, None), "best_test_acc": (float, None), "epochs": (int,),
                 "train_seconds": (float,), "schedule": (str,), "seed": (int,), "config": (str,),
                 "stop_reason": (str,)}


def read_run(runs_dir, name) -> Run:
    """A finished run's folder, checked: a damaged file is one line naming it and the cure."""
    folder = Path(runs_dir) / name
    if not (folder / METRICS).is_file():
        raise UserError(f"{folder}: missing training outputs; run train@{name} first")
    cure = f"the run's folder is damaged: `dvc repro -f -s train@{name}` trains it again"
    try:
        summary = json.loads((folder / METRICS).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{folder / METRICS}: unreadable ({err}); {cure}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{folder / METRICS}: holds a {type(summary).__name__}, not a run's summary; {cure}")
    for key, types in SUMMARY_TYPES.items():
        if not _has_type(summary.get(key, ...), types):
            raise UserError(f"{folder / METRICS}: {key} is {summary.get(key, 'missing')!r}, not "
                            f"{' or '.join('null' if t is None else t.__name__ for t in types)}; {cure}")
    try:
        rows = read_epochs(folder)
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}/{err}; {cure}") from None
    if not rows:
        raise UserError(f"{folder / EPOCHS}: no epoch logged; {cure}")
    try:
        header = (folder / PREDICTIONS).read_text().split("\n", 1)[0]
    except OSError:
        raise UserError(f"{folder / PREDICTIONS}: missing or unreadable; {cure}") from None
    if header != "actual,predicted":
        raise UserError(f"{folder / PREDICTIONS}: its header is {header!r}, not actual,predicted; {cure}")
    return Run(name, rows, summary, folder)


def _has_type(value, types) -> bool:
    if value is None:
        return None in types
    if isinstance(value, bool):
        return False
    return any(t is not None and (isinstance(value, t) or (t is float and isinstance(value, int))) for t in types)
