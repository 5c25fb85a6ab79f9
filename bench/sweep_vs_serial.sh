#!/usr/bin/env bash
# The default matrix (3 seeds x 2 schedules) from scratch: a serial `dvc repro` against the sweep, in fresh
# clones, interleaved, with the project's .venv. Prints one line per run: what, wall seconds, the verdict.
#     bash bench/sweep_vs_serial.sh [pairs] [extra sweep args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pairs=${1:-2}; shift || true
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
work=$(mktemp -d /tmp/sweep-bench.XXXX)
run() {  # name, command...
    local name=$1; shift
    git clone -q "$here" "$work/$name"
    (cd "$work/$name" && rm -f dvc.lock && git config user.name bench && git config user.email bench@localhost
     start=$(date +%s.%N); "$@" > "$work/$name.log" 2>&1; end=$(date +%s.%N)
     verdict=$(python -c "import json; print(json.load(open('metrics/comparison.json'))['verdict'])")
     printf '%-10s %7.1f s  %s\n' "$name" "$(echo "$end - $start" | bc)" "$verdict")
}
for i in $(seq "$pairs"); do
    run "serial-$i" dvc repro
    run "sweep-$i" python -m thesislab.sweep "$@"
done
echo "logs and clones: $work"
