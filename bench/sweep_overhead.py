"""What a sweep's engine adds to each run, on tiny data: submit to first epoch, and last epoch to gathered.

    python -m bench.sweep_overhead --engines local slurm ray --repeats 3

For each engine: a fresh copy of the project (git clone of this one) with tiny params (2 runs, 3 epochs of 132
images), the stages before training run first, then `python -m thesislab.sweep --engine E`, watched every 20 ms:
  submit   the sweep prints "sweep: N runs to train" (the engine is ready, the tasks go out)
  first    a run's scratch log reaches epoch 1 (its process started, imported torch, loaded data, trained 1 epoch)
  last     the last run's status says done
  gathered the sweep exits (dvc commit, dvc repro of the comparison)
The stage's own start-up and first epoch are in "submit to first epoch" for every engine: read the engines'
figures against local's. SLURM needs a running cluster (bash .ci/slurm.sh start), Ray `pip install -e '.[ray]'`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {"seeds": [0], "speedsigns": {"train_per_class": 12, "test_per_class": 4, "size": 16, "seed": 0},
        "image_size": 16, "batch_size": 16, "epochs": 3, "engine": {"eval_batch_size": 64}}


def merge(base, over):
    return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in over.items()}}


def project(dest):
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    params = dest / "params.yaml"
    params.write_text(yaml.safe_dump(merge(yaml.safe_load(params.read_text()), TINY), sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "dvc", "repro", "stats"], cwd=dest, env=env, check=True,
                   capture_output=True)
    return env


def one(engine, workdir):
    dest = Path(tempfile.mkdtemp(dir=workdir)) / "proj"
    env = project(dest)
    runs = ["static-0", "dynamic-0"]
    args = [sys.executable, "-m", "thesislab.sweep", "--engine", engine] + (["--time", "10:00"] if engine == "slurm"
                                                                             else [])
    child = subprocess.Popen(args, cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen = [], {}

    def read():
        for line in child.stdout:
            lines.append(line)
            if "runs to train" in line:
                seen["submit"] = time.perf_counter()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    first, done = {}, {}
    while child.poll() is None:
        now = time.perf_counter()
        for r in runs:
            live = dest / "checkpoints" / r / "live" / "metrics.json"
            if r not in first and live.exists() and json.loads(live.read_text() or "{}").get("step", 0) >= 1:
                first[r] = now
            status = dest / ".sweep" / "runs" / f"{r}.json"
            if r not in done and status.exists() and json.loads(status.read_text() or "{}").get("state") == "done":
                done[r] = now
        time.sleep(0.02)
    gathered = time.perf_counter()
    reader.join()
    submit = seen.get("submit")
    if child.returncode != 0 or submit is None:
        raise SystemExit(f"{engine}: the sweep failed:\n{''.join(lines)}")
    return {"first": statistics.median(first[r] - submit for r in runs if r in first),
            "gathered": gathered - max(done.values())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", nargs="+", default=["local", "slurm", "ray"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as workdir:
        results = {e: [] for e in args.engines}
        for _ in range(args.repeats):  # interleaved, so that the machine's drift falls on every engine alike
            for e in args.engines:
                results[e].append(one(e, workdir))
    print(f"{'engine':<8} {'submit to first epoch (s)':<34} {'last epoch to gathered (s)':<34}")
    for e, rs in results.items():
        firsts, gathers = [r["first"] for r in rs], [r["gathered"] for r in rs]
        print(f"{e:<8} median {statistics.median(firsts):5.1f}  ({', '.join(f'{x:.1f}' for x in firsts)})"
              f"{'':<6} median {statistics.median(gathers):5.1f}  ({', '.join(f'{x:.1f}' for x in gathers)})")


if __name__ == "__main__":
    main()
