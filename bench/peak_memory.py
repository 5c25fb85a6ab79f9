"""Peak memory of a command and all its descendants: anonymous memory (what the process allocated) apart from
file-backed pages (a memory-mapped cache, shared libraries: page cache the kernel can drop).

    python -m bench.peak_memory -- dvc repro -s train@static-0

Samples /proc/<pid>/status (RssAnon, RssFile) of the process tree every 50 ms (Linux) and prints one JSON line:
wall seconds, the exit status, the peak anonymous RSS of the whole tree and of its largest process, and the
peak file-backed RSS of the tree, in MB.
"""

import json
import subprocess
import sys
import time


def tree(pid):
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def rss_kb(pid):
    """(RssAnon, RssFile) of one process, in kB; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("RssAnon", "RssFile")))
        return int(fields["RssAnon"].split()[0]), int(fields["RssFile"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    start = time.perf_counter()
    child = subprocess.Popen(args)
    peak_anon = peak_one = peak_file = 0
    while child.poll() is None:
        sizes = [rss_kb(p) for p in tree(child.pid)]
        peak_anon = max(peak_anon, sum(a for a, _ in sizes))
        peak_one = max(peak_one, max((a for a, _ in sizes), default=0))
        peak_file = max(peak_file, sum(f for _, f in sizes))
        time.sleep(0.05)
    print(json.dumps({"command": " ".join(args), "seconds": round(time.perf_counter() - start, 1),
                      "exit": child.returncode, "peak_anon_mb_tree": round(peak_anon / 1024),
                      "peak_anon_mb_largest_process": round(peak_one / 1024),
                      "peak_file_mb_tree": round(peak_file / 1024)}))
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
