"""The stats stage against the tutorials' way, on a real image folder: images/s and peak memory.

    python -m bench.stats_bench /path/to/cifar10 --sizes 10000 50000

Each measurement runs in its own process; the parent samples the proportional set size (PSS: shared
pages split between the processes sharing them) of that process and all its workers every 20 ms and
reports the peak. `ours` is thesislab.data.stats (streamed, exact integer sums, one worker per core);
`stack` is the tutorials' recipe: every image through ToTensor, torch.stack, then mean and std.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train_paths(root, n):
    from thesislab.data import layout

    found = layout.scan(root)
    return [str(Path(root) / rel) for rel, _ in found.files["train"][:n]]


def run_ours(paths):
    from thesislab.data.stats import channel_stats

    return channel_stats(paths, progress=False)


def run_stack(paths):
    import torch
    from PIL import Image
    from torchvision.transforms import ToTensor

    to_tensor = ToTensor()
    x = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths])
    return {"mean": x.mean(dim=(0, 2, 3)).tolist(), "std": x.std(dim=(0, 2, 3)).tolist(), "count": len(paths)}


def child(method, root, n):
    paths = train_paths(root, n)
    start = time.perf_counter()
    stats = {"ours": run_ours, "stack": run_stack}[method](paths)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "images_per_second": len(paths) / seconds, **stats}))


def tree_pss_kb(pid):
    """PSS of a process and its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def measure(method, root, n):
    cmd = [sys.executable, "-m", "bench.stats_bench", str(root), "--child", method, "--sizes", str(n)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss_kb(proc.pid))
        time.sleep(0.02)
    out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    return {**out, "peak_mb": peak / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="folder with train/<class>/ images")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000])
    ap.add_argument("--methods", nargs="+", default=["ours", "stack"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.root, args.sizes[0])
    print(f"{'method':>6} {'images':>7} {'images/s':>9} {'peak MB':>8}  mean / std")
    for n in args.sizes:
        for method in args.methods:
            r = measure(method, args.root, n)
            mean = " ".join(f"{v:.4f}" for v in r["mean"])
            std = " ".join(f"{v:.4f}" for v in r["std"])
            print(f"{method:>6} {r['count']:>7} {r['images_per_second']:>9,.0f} {r['peak_mb']:>8,.0f}  {mean} / {std}")
    print(f"cpu cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
