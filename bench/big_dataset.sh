#!/usr/bin/env bash
# Data larger than memory: 100,000 generated sign images at 128 px (4.9 GB decoded) through download, pathlist,
# stats and two epochs of training, each stage's wall time and peak memory; then the loop's speed against the
# model's compute-only speed at that size.
#
#   bash bench/big_dataset.sh /path/to/scratch      (a clone of this project is made there; needs ~15 GB)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
git clone -q "$here" "$dest"
cd "$dest"
export PATH="$here/.venv/bin:$PATH"
python - <<'PY'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["speedsigns"].update(train_per_class=8182, test_per_class=909, size=128)  # 11 x 9,091 = 100,001 images
p.update(image_size=128, seeds=[0], schedules=["static"], epochs=2, loss_stop=0)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
for stage in download pathlist stats train@static-0; do
  python -m bench.peak_memory -- dvc repro -s "$stage" > "stage-$stage.log" 2>&1
  tail -n 1 "stage-$stage.log"
done
grep -h "^data:" stage-train@static-0.log
python -c "import json; m = json.load(open('metrics/runs/static-0/metrics.json')); print('train loop images/s:', m['images_per_second'])"
du -sh data/cache
python -m bench.throughput --model signnet --image-size 128 --batch-sizes 32 --images 2048 --repeats 3 --streamed
