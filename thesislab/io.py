"""Atomic writes: a killed stage never leaves a file (or folder) that looks complete.

Every writer puts its bytes in a temporary sibling and renames it over the target; a rename within one
filesystem is atomic, so readers see the old file or the new one, never half of one. Inside `together()`, the
renames wait for the end of the block and happen all at once, so a stage's outputs change together or not at
all (a model file and its run folder; a comparison and its figures).
"""

import contextlib
import errno
import io as _io
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from thesislab.errors import UserError


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) files; outputs get the usual permissions instead.
_UMASK = _current_umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


_block = threading.local()  # .pending: [(put in place, throw away)] while a together() block runs


@contextlib.contextmanager
def together():
    """Every file and folder written atomically inside the block is put in place at its end, all at once, with
    Ctrl-C and SIGTERM held until the last is in place; an error or an interrupt inside the block leaves every
    earlier output as it was. A block inside another hands its outputs to the outer one."""
    outer = getattr(_block, "pending", None)
    if outer is not None:
        yield
        return
    _block.pending = []
    try:
        yield
        pending = _block.pending
        with _signals_held():
            for i, (put, _) in enumerate(pending):
                try:
                    put()
                except BaseException:
                    for _, discard in pending[i + 1:]:
                        discard()
                    raise
    except BaseException:
        for _, discard in _block.pending:
            discard()
        raise
    finally:
        _block.pending = None


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM recorded, not acted on, until the block ends, then re-delivered. Python runs signal
    handlers in the main thread whichever thread the signal reached, so this holds in a threaded process too;
    off the main thread (where handlers cannot be set) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda s, _frame: caught.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _put_in_place(put, discard):
    """Run `put` now, or at the end of the together() block that is open."""
    pending = getattr(_block, "pending", None)
    if pending is None:
        put()
    else:
        pending.append((put, discard))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it to `path`, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        _put_in_place(lambda: os.replace(tmp, path), lambda: _unlink(tmp))
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on {path.parent} (writing {path.name}); nothing was half-written") from None
        raise


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_torch(path, obj):
    """torch.save, atomically and byte-for-byte reproducibly: serialised in memory first, because torch.save
    to a file records that file's (temporary, random) name inside the archive."""
    import torch  # only the stages that save models pay for importing torch

    buf = _io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty temporary folder beside `path`; on success it replaces `path` whole.

    For outputs made of many files (a dataset): a killed run leaves only a hidden `.name.*.tmp` folder,
    which the next run removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        _put_in_place(lambda: _swap_dir(tmp, path), lambda: shutil.rmtree(tmp, ignore_errors=True))
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on {path.parent} (writing {path.name}); nothing was half-written") from None
        raise


def _swap_dir(tmp, path):
    if path.exists():
        old = path.with_name(f".{path.name}.old.tmp")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
