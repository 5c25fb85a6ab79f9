#!/usr/bin/env bash
# The sweep from scratch with its runs packed against the same runs each alone (today's default on the CPU), in
# fresh clones, interleaved, with the project's .venv. Prints one line per sweep: what, wall seconds, the verdict.
#     bash bench/pack_sweep.sh [pairs] [pack size] [params.yaml changes, KEY=YAML ...]
#     bash bench/pack_sweep.sh 1 6 model=vgg16 batch_size=8 speedsigns.train_per_class=40 epochs=2 loss_stop=0
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pairs=${1:-1}; size=${2:-6}; shift 2 || true
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
work=$(mktemp -d /tmp/pack-bench.XXXX)
run() {  # name, pack size
    git clone -q "$here" "$work/$1"
    (cd "$work/$1" && rm -f dvc.lock && git config user.name bench && git config user.email bench@localhost
     python -m bench.set_params "${changes[@]}"
     dvc repro -q check download pathlist stats > "$work/$1.log" 2>&1  # the data first: timed apart
     start=$(date +%s.%N); python -m thesislab.sweep --pack "$2" >> "$work/$1.log" 2>&1; end=$(date +%s.%N)
     verdict=$(python -c "import json; print(json.load(open('metrics/comparison.json'))['verdict'][:90])")
     printf '%-12s %7.1f s  %s\n' "$1" "$(echo "$end - $start" | bc)" "$verdict")
}
changes=("$@")
for i in $(seq "$pairs"); do
    run "alone-$i" 1
    run "pack$size-$i" "$size"
done
echo "logs and clones: $work"
