"""What every engine's task runs: one train stage's command, with its output in the run's log and its state in
the run's status file (which the sweep's progress board reads, on this host or from a shared filesystem).

    python -m thesislab.sweep.worker STATUS LOG -- CMD

Exits with the command's status. The status file is {"state": running|done|failed, "where", "attempt", "rc"};
each start counts an attempt, so a retried or requeued task says how many times it ran.

A pack (CMD is `python -m stages.train --pack ...`, plan.Pack) keeps, beside its own status and log, each of its
runs' as the run alone would have them: a run is done when the pack prints that its outputs are written
(files.FINISHED), while the others train on; started again, the pack trains only the runs not done.
"""

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from thesislab import files, io
from thesislab.parallel import PARENT, die_with_parent


def read_status(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


WHERE = "THESISLAB_WHERE"  # set by an engine that knows better than the host name (Ray: the node's id)


def where() -> str:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return os.environ.get(WHERE, socket.gethostname()) + (f" gpu {gpus}" if gpus not in (None, "") else "")


EXIT_NO_STATE = 74  # sysexits' EX_IOERR: the worker could not write the run's status or log (a full disk, say)


class Status:
    """A task's (or a packed run's) status file: made `running` (an attempt more) when started, then ended."""

    def __init__(self, path, started):
        self.path, self.started = path, started
        self.attempt = read_status(path).get("attempt", 0) + 1
        io.write_json(path, {"state": "running", "where": where(), "attempt": self.attempt, "started": started})

    def end(self, rc):
        io.write_json(self.path, {"state": "done" if rc == 0 else "failed", "where": where(), "attempt": self.attempt,
                                  "rc": rc, "seconds": round(time.time() - self.started, 1)})


def _shell_rc(rc) -> int:
    """Killed by a signal: exit as a shell would (128 + n), so every engine reads one number."""
    return 128 - rc if rc < 0 else rc


def run(status, log, cmd) -> int:
    status = Status(status, time.time())
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- attempt {status.attempt} on {where()}: {cmd}\n".encode())
        out.flush()
        # No shell in between: a shell that stays the command's parent (dash does) would be the process the run's
        # die-with-parent link watches, and nobody signals it when this worker is killed.
        try:
            proc = subprocess.Popen(shlex.split(cmd), stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, PARENT: str(os.getpid())})
        except OSError as err:  # no such program (127) or not executable (126), as a shell says; in the log
            out.write(f"error: cannot start {shlex.split(cmd)[0]}: {err.strerror}\n".encode())
            proc, failed = None, 126 if isinstance(err, PermissionError) else 127
        try:
            rc = proc.wait() if proc else failed
        except KeyboardInterrupt:  # the sweep was cancelled: the stage got the same signal and stops cleanly
            rc = proc.wait()
    rc = _shell_rc(rc)
    status.end(rc)
    return rc


PACK = "--pack"


def pack_runs(cmd):
    """(the command before its runs, [(run name, its stage command)]) of a pack's command, or None for one run's."""
    tokens = shlex.split(cmd)
    if PACK not in tokens:
        return None
    head = tokens[:tokens.index(PACK) + 1]
    rest = tokens[len(head):]
    if rest[:1] == ["--width"]:
        head, rest = head + rest[:2], rest[2:]
    runs = []
    for stage_cmd in rest:
        args = shlex.split(stage_cmd)
        runs.append((files.run_name(args[args.index("--schedule") + 1], args[args.index("--seed") + 1]), stage_cmd))
    return head, runs


def run_pack(status, log, cmd) -> int:
    head, runs = pack_runs(cmd)
    runs_status, runs_log = Path(status).parent, Path(log).parent
    todo = [(name, c) for name, c in runs if read_status(runs_status / f"{name}.json").get("state") != "done"]
    started = time.time()
    status = Status(status, started)
    own = {name: Status(runs_status / f"{name}.json", started) for name, _ in todo}
    cmd = shlex.join([*head, *(c for _, c in todo)])
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    finished = set()
    with open(log, "ab") as out, contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(open(runs_log / f"{name}.log", "ab")) for name in own}
        _write(out, f"--- attempt {status.attempt} on {where()}: {cmd}\n".encode())
        for name, f in logs.items():
            _write(f, f"--- attempt {own[name].attempt} on {where()}, in {Path(log).name} with "
                      f"{len(todo) - 1} other runs: {cmd}\n".encode())
        proc = subprocess.Popen(shlex.split(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, PARENT: str(os.getpid())})
        try:
            for line in proc.stdout:
                _write(out, line)
                owner = _owner(line, logs)
                for name in [owner] if owner else logs:
                    _write(logs[name], line)
                if owner and line.startswith(files.FINISHED.format(name=owner).encode()):
                    finished.add(owner)  # its model and folder are written: the sweep may record it now
                    own[owner].end(0)
            rc = proc.wait()
        except KeyboardInterrupt:  # the sweep was cancelled: the pack got the same signal and stops cleanly
            rc = proc.wait()
    rc = _shell_rc(rc)
    for name in own.keys() - finished:
        own[name].end(rc or 1)  # a run the pack did not finish failed, even if the pack's process exited 0
    status.end(rc)
    return rc


def _owner(line, names):
    """The run a line of a pack's output is about (its epoch lines and its train@ lines), or None (for all)."""
    text = line.decode(errors="replace")
    for name in names:
        if text.startswith((f"train@{name}:", f"{name} epoch ")):
            return name
    return None


def _write(f, data):
    f.write(data)
    f.flush()


def describe_exit(rc) -> str:
    """How a run ended, in words: exit 1, killed by SIGKILL, lost (no status: its node or job went away)."""
    if rc is None or rc == LOST:
        return "lost: killed, timed out or its node went away"
    if rc < 0:  # the worker itself was killed (Popen's convention)
        rc = 128 - rc
    if rc == EXIT_NO_STATE:
        return "its worker could not write the run's status or log"
    if rc > 128:
        try:
            return f"killed by {signal.Signals(rc - 128).name}"
        except ValueError:
            pass
    return f"exit {rc}"


LOST = "lost"  # what an engine reports for a task that ended without a status


def main(argv=None):
    die_with_parent()  # a sweep (or Ray worker) that dies takes its runs with it
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: python -m thesislab.sweep.worker STATUS LOG -- CMD")
    cmd = " ".join(argv[3:])
    try:
        sys.exit(run_pack(argv[0], argv[1], cmd) if pack_runs(cmd) else run(argv[0], argv[1], cmd))
    except OSError as err:  # its status or log (a full disk): the sweep says so, since no log can
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_NO_STATE)


if __name__ == "__main__":
    main()
