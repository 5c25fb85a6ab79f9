"""The sweep's progress: one line per run (queued, running with its epoch, done with its test accuracy, failed
with why), redrawn in place on a terminal and printed as each run changes state elsewhere (CI logs, `nohup`)."""

import json
import sys
import threading
from pathlib import Path

from thesislab import files
from thesislab.sweep.worker import describe_exit, read_status


class Board:
    def __init__(self, tasks, stream=None, interval=1.0):
        self.tasks = list(tasks)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.interval = interval
        self.notes = {}  # run name -> what the engine says (queued on SLURM as job 12_3, retrying, ...)
        self._printed = {}
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = None

    def note(self, task, text):
        """What the engine says of a task: of each of its runs, for a pack."""
        for run in getattr(task, "tasks", (task,)):
            self.notes[run.name] = text

    def line(self, task) -> str:
        status = read_status(task.status)
        state = status.get("state", "queued")
        where = f"  [{status['where']}]" if status.get("where") else ""
        retry = f"  attempt {status['attempt']}" if status.get("attempt", 1) > 1 else ""
        if state == "running":
            live = _read_json(files.run_log_folder(task.work) / files.METRICS)
            epoch = live.get("step")
            acc = live.get("val_acc") if live.get("val_acc") is not None else live.get("test_acc")
            text = f"running  epoch {epoch}/{task.epochs}" if epoch else "running  starting"
            text += f"  acc {acc:.1f}%" if isinstance(acc, (int, float)) else ""
        elif state == "done":
            summary = _read_json(Path(task.out) / files.METRICS)
            acc = summary.get("test_acc")
            text = f"done     test {acc:.2f}%" if isinstance(acc, (int, float)) else "done"
            text += f"  {status.get('seconds', 0):.0f}s"
        else:  # failed, or queued (with the engine's note, if any)
            text = f"failed   {describe_exit(status.get('rc'))} (log: {task.log})" if state == "failed" else "queued"
        note = self.notes.get(task.name)
        return f"{task.stage:<24} {text}{where}{retry}" + (f"  {note}" if note and state != "done" else "")

    def render(self):
        lines = [self.line(t) for t in self.tasks]
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            self.stream.write("".join(f"{line}\x1b[K\n" for line in lines))
            self._drawn = len(lines)
        else:  # a log: a line whenever a run changes state, not every epoch
            for task, line in zip(self.tasks, lines):
                state = line.split()[1]
                if self._printed.get(task.name) != state:
                    self._printed[task.name] = state
                    self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self):
        def loop():
            while not self._stop.wait(self.interval):
                self.render()

        self.render()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.render()


def _read_json(path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
