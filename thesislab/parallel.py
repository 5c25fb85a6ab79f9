"""Chunked work over a process pool with one progress bar: decoding and drawing images use every core."""

import os
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm


def default_workers():
    return min(os.cpu_count() or 1, 8)


def chunked(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def map_chunks(fn, chunks, *args, desc="", progress=True, workers=None):
    """Yield fn(chunk, *args) for each chunk, in order, advancing a bar by len(chunk) as each finishes."""
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
            try:
                for chunk, result in zip(chunks, pool.map(fn, chunks, *([a] * len(chunks) for a in args))):
                    bar.update(len(chunk))
                    yield result
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
