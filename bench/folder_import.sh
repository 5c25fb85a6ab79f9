#!/usr/bin/env bash
# A folder dataset's import against its floor: DVC's own cost of tracking the same tree (`dvc add` in a scratch
# repo) plus one decode pass, next to the pipeline's download + pathlist + stats on it.
#
#   bash bench/folder_import.sh /path/to/cifar10 /path/to/scratch
# (the folder holds train/<class>/ and test/<class>/; the scratch folder gets two copies of it)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=$(realpath "$1")
scratch=$2
export PATH="$here/.venv/bin:$PATH"
now() { date +%s.%N; }
mkdir -p "$scratch"

# The floor: dvc add of the same tree, and every image decoded once on every core.
floor=$scratch/floor
rm -rf "$floor"; mkdir -p "$floor"; cd "$floor"; git init -q; dvc init -q
cp -r "$src" images
t0=$(now); dvc add -q images; t1=$(now)
python - "$floor/images" <<'PY'
import sys, time
from pathlib import Path
from thesislab.data.images import load_rgb
from thesislab.parallel import chunked, map_chunks

def decode(paths):
    for p in paths:
        load_rgb(p)
    return len(paths)

paths = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.png"))
start = time.perf_counter()
n = sum(map_chunks(decode, chunked(paths, 256), desc="decode", progress=False))
print(f"decode pass: {n} images in {time.perf_counter() - start:.1f} s")
PY
echo "dvc add: $(echo "$t1 - $t0" | bc) s"

# The pipeline: a clone of the project with the folder in data/sources/.
proj=$scratch/project
rm -rf "$proj"; git clone -q "$here" "$proj"; cd "$proj"
cp -r "$src" data/sources/images
python - <<'PY'
import yaml
p = yaml.safe_load(open("params.yaml"))
p.update(dataset="folder", source="data/sources/images")
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
for stage in download pathlist stats; do
  s0=$(now); dvc repro -q -s "$stage" > /dev/null; s1=$(now)
  echo "$stage: $(echo "$s1 - $s0" | bc) s"
done
