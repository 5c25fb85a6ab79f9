"""The one exception type a user should ever see, and the stage entry point that shows it."""

import contextlib
import errno
import functools
import signal
import sys


class UserError(Exception):
    """Bad params or bad data: reported as one line, no traceback, exit status 2."""


EXIT_USER_ERROR = 2


def stage_main(main):
    """Run a stage's main(); turn a UserError into one line on stderr and exit status 2.

    Anything else is a bug in this project and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted: outputs already written are complete; rerun to resume", file=sys.stderr)
            sys.exit(130)
        except OSError as err:
            # A full disk met outside an atomic write (a worker writing images, say): still one line.
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = err.filename or "the output folder's disk"
            print(f"error: no space left on {where}; outputs written before are intact", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper


@contextlib.contextmanager
def termination_as_interrupt():
    """SIGTERM (kill, a scheduler's time limit) and SIGHUP (a closed terminal) end the block as Ctrl-C does, so
    that its clean-up (runs cancelled, temporary folders removed) runs for them too."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_once():
    """For the rest of this process, the first Ctrl-C, SIGTERM or SIGHUP raises KeyboardInterrupt and every later
    one is ignored, so that the clean-up the first one starts (a throwaway clone removed) runs to its end and the
    process exits as it says (verify: a second signal must not leave half a clone behind)."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def first(signum, frame):
        for sig in signals:  # a handler that does nothing, not SIG_IGN: Python would raise for a signal it had
            signal.signal(sig, lambda *_: None)  # already caught but not yet handled ("ignored due to race")
        raise KeyboardInterrupt

    for sig in signals:
        signal.signal(sig, first)
