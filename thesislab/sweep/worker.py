"""What every engine's task runs: one train stage's command, with its output in the run's log and its state in
the run's status file (which the sweep's progress board reads, on this host or from a shared filesystem).

    python -m thesislab.sweep.worker STATUS LOG -- CMD

Exits with the command's status. The status file is {"state": running|done|failed, "where", "attempt", "rc"};
each start counts an attempt, so a retried or requeued task says how many times it ran.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from thesislab import io
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


def run(status, log, cmd) -> int:
    attempt = read_status(status).get("attempt", 0) + 1
    started = time.time()
    io.write_json(status, {"state": "running", "where": where(), "attempt": attempt, "started": started})
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- attempt {attempt} on {where()}: {cmd}\n".encode())
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
    if rc < 0:  # killed by a signal: exit as a shell would (128 + n), so every engine reads one number
        rc = 128 - rc
    state = "done" if rc == 0 else "failed"
    io.write_json(status, {"state": state, "where": where(), "attempt": attempt, "rc": rc,
                           "seconds": round(time.time() - started, 1)})
    return rc


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
    try:
        sys.exit(run(argv[0], argv[1], " ".join(argv[3:])))
    except OSError as err:  # its status or log (a full disk): the sweep says so, since no log can
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_NO_STATE)


if __name__ == "__main__":
    main()
