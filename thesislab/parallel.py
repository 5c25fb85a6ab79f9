"""Chunked work over a process pool with one progress bar: decoding and drawing images use every core."""

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from itertools import islice

from tqdm import tqdm


def default_workers():
    return min(os.cpu_count() or 1, 8)


def chunked(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def map_chunks(fn, chunks, *args, desc="", progress=True, workers=None):
    """Yield fn(chunk, *args) for each chunk, in order, advancing a bar by len(chunk) as each finishes.

    At most two chunks a worker are in flight, so results never pile up in memory faster than they are used."""
    workers = workers or default_workers()
    total = sum(len(c) for c in chunks)
    with tqdm(total=total, unit="img", desc=desc, disable=None if progress else True) as bar:
        if workers == 1 or len(chunks) == 1:
            for chunk in chunks:
                result = fn(chunk, *args)
                bar.update(len(chunk))
                yield result
            return
        with ProcessPoolExecutor(workers) as pool:
            todo = iter(chunks)
            pending = deque((c, pool.submit(fn, c, *args)) for c in islice(todo, 2 * workers))
            try:
                while pending:
                    chunk, future = pending.popleft()
                    result = future.result()
                    for following in islice(todo, 1):
                        pending.append((following, pool.submit(fn, following, *args)))
                    bar.update(len(chunk))
                    yield result
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise


PARENT = "THESISLAB_PARENT_PID"  # set by a process for the child it starts: the parent die_with_parent() expects


def die_with_parent():
    """Have this process get SIGTERM when the process that started it dies (Linux; elsewhere a no-op): a killed
    sweep, or a Ray worker cancelled by force, then leaves no run training on, writing files that the run
    started in its place writes too. A parent that died before the link was made (PARENT names it, and this
    process has another parent now) is acted on at once."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    expected = os.environ.pop(PARENT, None)  # for this process only: not what its own children should expect
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)
