"""What a run records: a row per epoch, and the summary of those rows. Each summary number is defined here once.

EpochLog keeps the rows (for the checkpoint and the summary); LiveLog, beside it, also sends every epoch
through DVCLive into the run's scratch folder and copies it to the live view (metrics/live), which `dvc exp
show` and the VS Code extension read while the run trains. When the run ends, the scratch folder (DVCLive's
summary and per-epoch files) becomes the run's folder, with the test predictions beside it.
"""

import contextlib
import fcntl
import json
import math
import shutil
import sys
from pathlib import Path

from thesislab import files, io
from thesislab.errors import UserError


class EpochLog:
    def __init__(self, rows=()):
        self.rows = []
        for row in rows:  # a resumed run's epochs
            self.append(row)

    @property
    def epochs_done(self):
        return len(self.rows)

    def log(self, epoch, lr, train, scores, seconds):
        """One epoch: the LR it trained at, its training loss/accuracy, and each split's scores."""
        val, test = scores.get("val") or {}, scores["test"]
        return self.append({
            "epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_acc": train["acc"],
            "val_loss": val.get("loss"), "val_acc": val.get("acc"), "test_loss": test["loss"], "test_acc": test["acc"],
            "seconds": seconds, "train_seconds": train["seconds"], "images": train["images"],
        })

    def append(self, row):
        self.rows.append(row)
        return row

    def summary(self, stop_reason, **identity) -> dict:
        return summarize(self.rows, stop_reason, **identity)


class LiveLog(EpochLog):
    """An EpochLog that also logs each epoch with DVCLive (step = epoch) into the run's own scratch folder, and
    copies that folder to the live view (metrics/live) after every epoch. The scratch folder is emptied when a
    run starts and a resumed run's epochs are logged again first, so it holds every epoch exactly once. Runs
    trained at once (a sweep) each log in their own folder and share the view, which shows the last run to
    finish an epoch: one run's files, never two runs' mixed."""

    def __init__(self, folder, view, name, rows=()):
        # dvcyaml=False: dvc.yaml declares what to show; no report, no experiment of DVCLive's own.
        self.live = _atomic_live()(str(folder), resume=False, report=None, save_dvc_exp=False, dvcyaml=False)
        self.folder, self.view, self.name = Path(folder), Path(view), name
        self._view_failed = False
        super().__init__(rows)

    def append(self, row):
        super().append(row)
        self.live.step = int(row["epoch"])
        self.live.summary["run"] = self.name
        for column in files.EPOCH_COLUMNS[1:]:
            if _finite(row[column]):  # an undefined value has no line (NaN would be written as text)
                self.live.log_metric(column, row[column])
        self.live.next_step()
        self.publish()
        return row

    def finish(self, summary):
        """The run's summary becomes DVCLive's metrics.json (step: the last epoch), for write_run to keep."""
        self.live.step = self.epochs_done
        self.live.summary = dict(summary)
        self.live.make_summary()

    def retire(self):
        """Once the run's folder holds its results, the live view says only which run trained last and how
        far: `dvc exp show` then shows the comparison's numbers, not one run's beside them."""
        self.live.summary = {"run": self.name}
        self.live.make_summary()
        self.publish()

    def publish(self):
        """Copy the scratch folder's files to the view, one atomic file at a time, holding the view's lock so that
        two runs never interleave their files. The view is a display: failing to refresh it never stops a run."""
        try:
            self.view.mkdir(parents=True, exist_ok=True)
            with _locked(self.view.parent / f".{self.view.name}.lock"):
                wanted = {files.METRICS, *(files.epoch_file(c) for c in files.EPOCH_COLUMNS[1:])}
                for rel in sorted(wanted - {files.METRICS}):
                    src, dst = self.folder / rel, self.view / rel
                    if src.exists():
                        io.write_bytes(dst, src.read_bytes())
                    else:  # a column this run never logged: another run's file must not stand in for it
                        dst.unlink(missing_ok=True)
                io.write_bytes(self.view / files.METRICS, (self.folder / files.METRICS).read_bytes())
        except (OSError, UserError) as err:
            if not self._view_failed:
                print(f"warning: could not refresh the live view {self.view} ({err}); training goes on",
                      file=sys.stderr)
            self._view_failed = True


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _atomic_live():
    """DVCLive's Live, with its summary written atomically: `dvc exp show` in another terminal reads
    metrics.json while the run trains, and DVCLive's own write (truncate, then write) can be caught half-done,
    which DVC reports as an error for the running experiment."""
    from dvclive import Live  # imports DVC: only the process that writes pays for it
    from dvclive.plots import NumpyEncoder

    class AtomicLive(Live):
        def make_summary(self):
            if self._step is not None:  # as Live.make_summary does
                self.summary["step"] = self.step
            io.write_text(self.metrics_file, json.dumps(self.summary, indent=4, cls=NumpyEncoder) + "\n")

    return AtomicLive


def lr_cut_epochs(rows) -> list:
    """The epochs that trained at a lower LR than the epoch before: the one definition of an LR cut, counted in
    metrics.json and marked on the figures."""
    return [int(b["epoch"]) for a, b in zip(rows, rows[1:]) if b["lr"] < a["lr"] * (1 - 1e-9)]


def summarize(rows, stop_reason, *, schedule, seed, model, device, config, schedule_params=None,
              test_set=None, computation=None) -> dict:
    """metrics.json. Accuracies are percent; a number that is undefined (NaN after divergence, no validation
    split) is null, never a string, and stop_reason says why."""
    last = rows[-1]
    finite = [r for r in rows if _finite(r["test_acc"])]
    best = max(finite, key=lambda r: r["test_acc"]) if finite else None
    step_seconds = sum(r["train_seconds"] for r in rows)
    return {
        "test_acc": _number(last["test_acc"]),
        # The highest test accuracy of any epoch: picked on the test set, so optimistic; the thesis reported it.
        "best_test_acc": _number(best["test_acc"]) if best else None,
        "best_epoch": int(best["epoch"]) if best else None,
        "test_loss": _number(last["test_loss"]),
        "train_acc": _number(last["train_acc"]),
        "train_loss": _number(last["train_loss"]),
        "val_acc": _number(last["val_acc"]),
        "epochs": int(last["epoch"]),
        "lr_reductions": len(lr_cut_epochs(rows)),
        "final_lr": last["lr"],
        "stop_reason": stop_reason,
        "train_seconds": round(sum(r["seconds"] for r in rows), 2),
        # Training steps only (no evaluation): the number to compare with the model's compute-only speed.
        "images_per_second": round(sum(r["images"] for r in rows) / max(step_seconds, 1e-9), 1),
        "schedule": schedule,
        "seed": seed,
        "model": model,
        "device": device,
        "config": config,  # the same in every run of one comparison (checkpoint.config_digest)
        "computation": computation or {},  # how the arithmetic was done (runtime.computation): part of config
        "schedule_params": schedule_params or {},  # this schedule's knobs: the same in every run of its arm
        "test_set": test_set,  # files.test_set_digest: what it was tested on (two experiments must agree)
    }


def _finite(v):
    return v is not None and math.isfinite(v)


def _number(v):
    return round(v, 4) if _finite(v) else None


def write_run(folder, live_folder, labels, predictions, classes):
    """What a finished run leaves: the live folder's DVCLive files and the test predictions, as the run's folder,
    replaced whole, so that it never holds one run's summary beside another's log (and a run that fails
    leaves the previous run's folder as it was)."""
    with io.atomic_dir(folder) as tmp:
        shutil.copy2(Path(live_folder) / files.METRICS, tmp / files.METRICS)
        (tmp / files.EPOCHS).mkdir(parents=True)
        for tsv in sorted((Path(live_folder) / files.EPOCHS).iterdir()):  # file by file: a full disk is an
            shutil.copy2(tsv, tmp / files.EPOCHS / tsv.name)               # OSError, not copytree's shutil.Error
        files.add_unlogged_columns(tmp)  # inside the atomic folder: written with the rest, or not at all
        files.write_predictions(tmp, labels, predictions, classes)
